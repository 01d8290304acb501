package replication

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/storage"
)

// Replica serves the peer protocol on one node: it checks each request's
// configuration epoch and reads or writes the node's own storage.
type Replica struct {
	engine    storage.Engine
	keyspaces Keyspaces
	clock     *Clock
	// dropWrites is a test hook (see SetUnsafeDropWrites).
	dropWrites atomic.Bool
	// epochWait bounds how long a request from a coordinator that is ahead of
	// this node waits for the metadata log to catch up.
	epochWait time.Duration
	// placement, when set, keeps hints for keys this node does not
	// replicate out of its storage (see Hint).
	placement Placement
	// hintsNotReplica counts hinted mutations dropped because this node
	// does not replicate their keys.
	hintsNotReplica atomic.Uint64
	// paxos serializes the Paxos messages of each key (replica_paxos.go).
	paxos paxosLocks
}

// Placement says which keys this node replicates, on the placement it has
// applied. Node implements it over the metadata log's topology.
type Placement interface {
	// Hold runs fn while the placement cannot change on this node (no
	// metadata entry is applied meanwhile). replicates reports whether this
	// node is one of key's replicas in keyspace, on the ring in force or on
	// the one a change in progress leads to.
	Hold(fn func(replicates func(keyspace string, key []byte) bool) error) error
}

// SetPlacement makes the replica drop hints for keys it does not replicate.
// Call it before the replica serves.
func (r *Replica) SetPlacement(p Placement) { r.placement = p }

// HintsDroppedNotReplica is how many hinted mutations the replica has
// dropped because it does not replicate their keys.
func (r *Replica) HintsDroppedNotReplica() uint64 { return r.hintsNotReplica.Load() }

// NewReplica returns a Replica over engine. clock observes the versions it
// stores, so that writes this node coordinates later order after them.
func NewReplica(engine storage.Engine, keyspaces Keyspaces, clock *Clock) *Replica {
	r := &Replica{engine: engine, keyspaces: keyspaces, clock: clock, epochWait: 2 * time.Second}
	r.paxos.seed = maphash.MakeSeed()
	return r
}

// checkEpoch returns the keyspace's configuration if the request's epoch is
// current, an *EpochError if this replica knows a newer one, and
// ErrKeyspaceNotFound if the keyspace is unknown even after waiting for the
// metadata log to reach the request's epoch.
func (r *Replica) checkEpoch(ctx context.Context, keyspace string, epoch uint64) error {
	cfg, ok := r.keyspaces.Keyspace(keyspace)
	if ok && cfg.Epoch > epoch {
		return &EpochError{Keyspace: keyspace, Requested: epoch, Known: cfg.Epoch}
	}
	if !ok || cfg.Epoch < epoch {
		// The coordinator has applied more of the metadata log than we have.
		wctx, cancel := context.WithTimeout(ctx, r.epochWait)
		err := r.keyspaces.WaitForIndex(wctx, epoch)
		cancel()
		if err != nil && !ok {
			return fmt.Errorf("keyspace %q at epoch %d: %w", keyspace, epoch, ErrKeyspaceNotFound)
		}
		if cfg, ok = r.keyspaces.Keyspace(keyspace); !ok {
			return fmt.Errorf("keyspace %q: %w", keyspace, ErrKeyspaceNotFound)
		}
		if cfg.Epoch > epoch {
			return &EpochError{Keyspace: keyspace, Requested: epoch, Known: cfg.Epoch}
		}
	}
	return nil
}

// Write stores the mutations whose epochs are current, in one atomic batch.
func (r *Replica) Write(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	return r.apply(ctx, req, true)
}

// Hint stores delivered hints. It skips the epoch check: a hint is an old
// write by definition, and last writer wins keeps a late one harmless.
//
// A hint may arrive long after it was written: held while this node was
// down, or sent during a topology change that has since given the key's
// range to other members. With a Placement set, a hinted mutation for a key
// this node no longer replicates is acknowledged and dropped: the change
// that took the range away streamed it, and every write acknowledged since
// went to the new replicas, so the key's replicas hold it without this copy.
// Stored, it would be a record cleanup has already passed over (cleanup.go
// in package node), left on a node that does not own it. The check and the
// write run while the placement is held, so a change applied here is
// applied either before the check (and the hint dropped) or after the write
// (and the record left for the cleanup that follows that change).
func (r *Replica) Hint(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	if r.placement == nil {
		return r.apply(ctx, req, false)
	}
	// A sender ahead of this node placed the hint on metadata this node has
	// not applied yet: catch up first, as for a write (bounded by epochWait;
	// the check below then decides on what has been applied).
	var ahead uint64
	for _, m := range req.GetMutations() {
		if cfg, ok := r.keyspaces.Keyspace(m.GetKeyspace()); !ok || cfg.Epoch < m.GetEpoch() {
			ahead = max(ahead, m.GetEpoch())
		}
	}
	if ahead > 0 {
		wctx, cancel := context.WithTimeout(ctx, r.epochWait)
		_ = r.keyspaces.WaitForIndex(wctx, ahead) // decided below either way
		cancel()
	}
	var resp *kvpb.ReplicaWriteResponse
	err := r.placement.Hold(func(replicates func(string, []byte) bool) error {
		keep := make([]*kvpb.Mutation, 0, len(req.GetMutations()))
		kept := make([]int, 0, len(req.GetMutations()))
		for i, m := range req.GetMutations() {
			if len(m.GetRecord().GetKey()) == 0 || m.GetKeyspace() == "" || replicates(m.GetKeyspace(), m.GetRecord().GetKey()) {
				keep = append(keep, m)
				kept = append(kept, i)
			}
		}
		dropped := len(req.GetMutations()) - len(keep)
		if dropped == 0 {
			var err error
			resp, err = r.apply(ctx, req, false)
			return err
		}
		r.hintsNotReplica.Add(uint64(dropped))
		resp = &kvpb.ReplicaWriteResponse{Results: make([]*kvpb.MutationResult, len(req.GetMutations()))}
		for i := range resp.Results {
			resp.Results[i] = &kvpb.MutationResult{Ok: true}
		}
		if len(keep) == 0 {
			return nil
		}
		sub, err := r.apply(ctx, &kvpb.ReplicaWriteRequest{Mutations: keep, From: req.GetFrom()}, false)
		if err != nil {
			return err
		}
		for j, i := range kept {
			resp.Results[i] = sub.GetResults()[j]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// SetUnsafeDropWrites makes the replica acknowledge writes without storing
// them. It exists so that the Jepsen harness can prove it catches lost
// writes; nodes enable it only when started with unsafe test hooks.
func (r *Replica) SetUnsafeDropWrites(drop bool) { r.dropWrites.Store(drop) }

func (r *Replica) apply(ctx context.Context, req *kvpb.ReplicaWriteRequest, checkEpoch bool) (*kvpb.ReplicaWriteResponse, error) {
	resp := &kvpb.ReplicaWriteResponse{Results: make([]*kvpb.MutationResult, len(req.GetMutations()))}
	muts := make([]storage.Mutation, 0, len(req.GetMutations()))
	idx := make([]int, 0, len(req.GetMutations()))
	for i, m := range req.GetMutations() {
		res := &kvpb.MutationResult{}
		resp.Results[i] = res
		if len(m.GetRecord().GetKey()) == 0 || m.GetKeyspace() == "" {
			res.Error = "mutation without keyspace or key"
			continue
		}
		if checkEpoch {
			if err := r.checkEpoch(ctx, m.GetKeyspace(), m.GetEpoch()); err != nil {
				if ee, ok := err.(*EpochError); ok {
					res.KnownEpoch = ee.Known
				}
				res.Error = err.Error()
				continue
			}
		}
		rec := RecordFromPB(m.GetRecord())
		r.clock.Observe(rec.Version.Timestamp)
		muts = append(muts, storage.Mutation{Keyspace: m.GetKeyspace(), Record: rec})
		idx = append(idx, i)
	}
	if len(muts) == 0 {
		return resp, nil
	}
	if !r.dropWrites.Load() {
		if _, err := r.engine.Apply(ctx, muts); err != nil {
			return nil, fmt.Errorf("replica write: %w", err)
		}
	}
	for _, i := range idx {
		resp.Results[i].Ok = true
	}
	return resp, nil
}

// Read returns the replica's record of a key, tombstones included.
func (r *Replica) Read(ctx context.Context, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	if err := r.checkEpoch(ctx, req.GetKeyspace(), req.GetEpoch()); err != nil {
		if ee, ok := err.(*EpochError); ok {
			return &kvpb.ReplicaReadResponse{KnownEpoch: ee.Known}, nil
		}
		return nil, err
	}
	rec, ok, err := r.engine.Get(req.GetKeyspace(), req.GetKey())
	if err != nil {
		return nil, fmt.Errorf("replica read: %w", err)
	}
	if !ok {
		return &kvpb.ReplicaReadResponse{}, nil
	}
	if req.GetDigest() {
		rec.Value = nil
	}
	return &kvpb.ReplicaReadResponse{Found: true, Record: RecordToPB(rec)}, nil
}

// Scan returns the replica's records in a key range, tombstones included.
func (r *Replica) Scan(ctx context.Context, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error) {
	if err := r.checkEpoch(ctx, req.GetKeyspace(), req.GetEpoch()); err != nil {
		if ee, ok := err.(*EpochError); ok {
			return &kvpb.ReplicaScanResponse{KnownEpoch: ee.Known}, nil
		}
		return nil, err
	}
	var end []byte
	if len(req.GetEnd()) > 0 {
		end = req.GetEnd()
	}
	recs, err := r.engine.Scan(req.GetKeyspace(), req.GetStart(), end, int(req.GetLimit()))
	if err != nil {
		return nil, fmt.Errorf("replica scan: %w", err)
	}
	resp := &kvpb.ReplicaScanResponse{Records: make([]*kvpb.Record, len(recs))}
	for i, rec := range recs {
		resp.Records[i] = RecordToPB(rec)
	}
	return resp, nil
}

// LocalGet reads this replica's own record without any epoch check, for
// operators and tests.
func (r *Replica) LocalGet(keyspace string, key []byte) (storage.Record, bool, error) {
	return r.engine.Get(keyspace, key)
}
