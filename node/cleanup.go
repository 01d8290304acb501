package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication"
)

// Cleanup: a node deletes the records of the keys it is no longer a replica
// of.
//
// After a join, the members that handed ranges to the joining one keep
// their copies; after N shrinks, the replicas dropped from a key's list
// keep theirs. Those copies are dead weight, and worse, they are stale from
// the moment the first write they no longer receive is acknowledged: a
// later change that makes the member a replica again (a decommission, N
// growing back) would treat them as data. Cleanup removes them.
//
// The decision, for each record of a keyspace: the node keeps it when it is
// among the first max(N, PendingN) members of the key's preference list on
// the ring in force (the current ring), and deletes it otherwise (ownsKey).
// It runs only when no placement change is in progress (no member joining
// or leaving, no PendingN: cleanupAllowed), and only once every member has
// applied the metadata the node that started it has applied (awaitApplied).
//
// Why deleting is safe, i.e. no read or write in force needs the record:
//   - Reads and writes. A coordinator places a key on the current ring of
//     the epoch it knows, and a replica refuses a request at an older epoch
//     (the topology epoch is part of every keyspace's epoch, fsm.Keyspace).
//     This node has applied the epoch it cleans for, so a coordinator that
//     would still count it as a replica of a key it has given up is refused
//     here; and every member has applied it before cleanup starts, so none
//     is left that places keys on the old ring. A coordinator at the
//     cleaned-for epoch never sends the key here.
//   - Streams. A stream copies records only while a change is in progress
//     (the change's pending replicas are the only receivers), and cleanup
//     refuses to run then. The check and each batch's delete run under the
//     metadata state machine's lock (fsm.underApply), so a change applied
//     on this node is applied either before a batch's check, which then
//     stops cleanup, or after the batch's delete: the leader streams only
//     once this node reports it applied the change, so no stream can put a
//     record here that a batch from before the change then removes.
//   - Durability. The stream that ended the change copied every record of
//     the ranges this node gave up to their new replicas before the change
//     was committed (join.go); the copies removed here are extra.
//   - Hints and repair. A hint delivered late for a key this node does not
//     own is dropped by the replica (placement, replication.Replica.Hint),
//     under the same lock, so none lands after a batch has passed its key;
//     repair and read repair follow the current ring and do not use these
//     copies.
//
// Records are removed outright (storage.Engine.Purge), not tombstoned: a
// tombstone would be a record of a key the node does not own, and could
// shadow a newer value were the node to become a replica again.

// ErrCleanupRefused refuses a cleanup while a placement change is in
// progress (a member joining or leaving, or N growing), or while the ring
// it would clean for is not in force on every member.
var ErrCleanupRefused = errors.New("node: cleanup refused")

// cleanupPage is how many records one scan page and one delete batch carry.
const cleanupPage = 512

// CleanupReport is what one node's cleanup of a keyspace did.
type CleanupReport struct {
	// Keyspace is the keyspace cleaned.
	Keyspace string
	// Epoch is the keyspace epoch (keyspace and topology) cleaned for.
	Epoch uint64
	// Scanned is how many records were looked at, Removed how many of
	// them were deleted.
	Scanned, Removed int
}

// ownsKey reports whether member id is one of key's replicas on ring r
// under cfg: among the first max(N, PendingN) members of its preference
// list (as many as the ring has, when it has fewer).
func ownsKey(r *ring.Ring, cfg replication.KeyspaceConfig, key []byte, id string) bool {
	rf := max(cfg.N, min(cfg.PendingN, r.Len()))
	return slices.Contains(r.PreferenceList(cfg.Name, key, rf), id)
}

// cleanupAllowed says whether a node may clean keyspace cfg for the
// placement in st: not while a member joins or leaves (their stream may be
// copying records to this node), nor while N grows (PendingN set).
func cleanupAllowed(st *topoState, cfg replication.KeyspaceConfig) error {
	if st == nil || st.current == nil {
		return fmt.Errorf("%w: the ring is not initialised", ErrCleanupRefused)
	}
	if c, ok := st.Changing(); ok {
		return fmt.Errorf("%w: %s is %s", ErrCleanupRefused, c.ID, c.State)
	}
	if cfg.PendingN > 0 {
		return fmt.Errorf("%w: keyspace %q grows from N=%d to %d", ErrCleanupRefused, cfg.Name, cfg.N, cfg.PendingN)
	}
	return nil
}

// underApply runs fn while no metadata entry is being applied here.
func (f *fsm) underApply(fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn()
}

// CleanupLocal deletes this node's records of keyspace whose keys it is not
// a replica of on the ring in force (see the top of cleanup.go). It does not
// check that the other members have applied that ring: callers do
// (CleanupKeyspace, the leader after a change). It stops with
// ErrCleanupRefused when a change begins while it runs.
func (n *Node) CleanupLocal(ctx context.Context, keyspace string) (CleanupReport, error) {
	rep := CleanupReport{Keyspace: keyspace}
	cfg, ok := n.meta.Keyspace(keyspace)
	if !ok {
		return rep, fmt.Errorf("keyspace %q: %w", keyspace, replication.ErrKeyspaceNotFound)
	}
	rep.Epoch = cfg.Epoch
	if err := cleanupAllowed(n.meta.topo.Load(), cfg); err != nil {
		return rep, err
	}
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		recs, err := n.engine.Scan(keyspace, from, nil, cleanupPage)
		if err != nil {
			return rep, fmt.Errorf("scan %q: %w", keyspace, err)
		}
		rep.Scanned += len(recs)
		err = n.meta.underApply(func() error {
			now, ok := n.meta.Keyspace(keyspace)
			if !ok {
				return fmt.Errorf("keyspace %q: %w", keyspace, replication.ErrKeyspaceNotFound)
			}
			st := n.meta.topo.Load()
			if err := cleanupAllowed(st, now); err != nil {
				return err
			}
			if now.Epoch != cfg.Epoch {
				return fmt.Errorf("%w: keyspace %q moved from epoch %d to %d", ErrCleanupRefused, keyspace, cfg.Epoch, now.Epoch)
			}
			var drop [][]byte
			for _, r := range recs {
				if !ownsKey(st.current, cfg, r.Key, n.cfg.ID) {
					drop = append(drop, r.Key)
				}
			}
			if len(drop) == 0 {
				return nil
			}
			if err := n.engine.Purge(ctx, keyspace, drop); err != nil {
				return fmt.Errorf("delete %d records of %q: %w", len(drop), keyspace, err)
			}
			rep.Removed += len(drop)
			return nil
		})
		if err != nil {
			return rep, err
		}
		if len(recs) < cleanupPage {
			return rep, nil
		}
		from = append(slices.Clone(recs[len(recs)-1].Key), 0)
	}
}

// LocalKeys returns the keys of keyspace this node's storage holds,
// tombstones included, in key order (for tests and checks of cleanup).
func (n *Node) LocalKeys(keyspace string) ([][]byte, error) {
	recs, err := n.engine.Scan(keyspace, nil, nil, 0)
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	return keys, nil
}

// Owns reports whether this node is one of key's replicas in keyspace on
// the ring in force here.
func (n *Node) Owns(keyspace string, key []byte) bool {
	cfg, ok := n.meta.Keyspace(keyspace)
	st := n.meta.topo.Load()
	return ok && st != nil && st.current != nil && ownsKey(st.current, cfg, key, n.cfg.ID)
}

// placement gives the replica this node's view of which keys it
// replicates (replication.Placement), so that a hint for a key it gave up
// does not outlive the cleanup that removed the key's other records.
type placement struct{ n *Node }

// Hold runs fn under the metadata state machine's lock, as cleanup's
// batches do: a hint checked and written there cannot straddle a change.
func (p placement) Hold(fn func(replicates func(keyspace string, key []byte) bool) error) error {
	return p.n.meta.underApply(func() error {
		st := p.n.meta.topo.Load()
		return fn(func(keyspace string, key []byte) bool {
			if st == nil || st.current == nil {
				return true // no ring yet: nothing to judge by
			}
			cfg, ok := p.n.meta.Keyspace(keyspace)
			if !ok {
				return false
			}
			return ownsKey(st.current, cfg, key, p.n.cfg.ID) ||
				(st.future != nil && ownsKey(st.future, cfg, key, p.n.cfg.ID))
		})
	})
}

// CleanupKeyspace cleans keyspace on every normal ring member, once every
// member has applied the metadata this node has applied (so that the ring
// cleaned for is in force everywhere). A member that could not clean is
// reported with its error; the error returned is for refusals that apply
// to all (unknown keyspace, a change in progress, members not caught up).
func (n *Node) CleanupKeyspace(ctx context.Context, keyspace string) (*kvpb.CleanupKeyspaceResponse, error) {
	cfg, ok := n.meta.Keyspace(keyspace)
	if !ok {
		return nil, fmt.Errorf("keyspace %q: %w", keyspace, replication.ErrKeyspaceNotFound)
	}
	st := n.meta.topo.Load()
	if err := cleanupAllowed(st, cfg); err != nil {
		return nil, err
	}
	if err := n.awaitApplied(ctx, n.meta.Applied()); err != nil {
		return nil, fmt.Errorf("%w: not every member has applied the ring: %w", ErrCleanupRefused, err)
	}
	resp := &kvpb.CleanupKeyspaceResponse{Epoch: cfg.Epoch}
	for _, m := range st.Members {
		if m.State != StateNormal {
			continue
		}
		res := &kvpb.CleanupKeyspaceResponse_Node{Id: m.ID}
		resp.Nodes = append(resp.Nodes, res)
		if m.ID == n.cfg.ID {
			rep, err := n.CleanupLocal(ctx, keyspace)
			res.KeysScanned, res.KeysRemoved = uint64(rep.Scanned), uint64(rep.Removed)
			if err != nil {
				res.Error = err.Error()
			}
			continue
		}
		c, err := n.transport.adminClient(m.ID)
		if err != nil {
			res.Error = err.Error()
			continue
		}
		r, err := c.CleanupKeyspace(ctx, &kvpb.CleanupKeyspaceRequest{Keyspace: keyspace, Local: true})
		if err != nil {
			res.Error = err.Error()
			continue
		}
		if len(r.GetNodes()) == 1 {
			res.KeysScanned, res.KeysRemoved, res.Error = r.Nodes[0].GetKeysScanned(), r.Nodes[0].GetKeysRemoved(), r.Nodes[0].GetError()
		}
	}
	return resp, nil
}

// cleanupAfterChange cleans every keyspace on every member once the change
// that ended at index is in force everywhere; the metadata leader calls it
// after a join or a leave completes. Failures are logged: `adaptkv keyspace
// cleanup` runs it again.
func (n *Node) cleanupAfterChange(ctx context.Context, index uint64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := n.awaitApplied(ctx, index); err != nil {
		n.log.Warn("cleanup after a topology change", "topology_epoch", index, "err", err)
		return
	}
	for _, d := range n.meta.Defs() {
		resp, err := n.CleanupKeyspace(ctx, d.Name)
		if err != nil {
			n.log.Warn("cleanup after a topology change", "keyspace", d.Name, "topology_epoch", index, "err", err)
			continue
		}
		for _, r := range resp.GetNodes() {
			level := slog.LevelInfo
			if r.GetError() != "" {
				level = slog.LevelWarn
			}
			n.log.Log(ctx, level, "cleanup after a topology change", "keyspace", d.Name, "member", r.GetId(),
				"keys_scanned", r.GetKeysScanned(), "keys_removed", r.GetKeysRemoved(), "err", r.GetError())
		}
	}
}

// CleanupKeyspace implements Admin.CleanupKeyspace: with local set, this
// node's part; otherwise the fan-out to every normal member.
func (s adminServer) CleanupKeyspace(ctx context.Context, req *kvpb.CleanupKeyspaceRequest) (*kvpb.CleanupKeyspaceResponse, error) {
	if req.GetKeyspace() == "" {
		return nil, invalidArgument("cleanup: a keyspace name is required")
	}
	if !req.GetLocal() {
		resp, err := s.n.CleanupKeyspace(ctx, req.GetKeyspace())
		return resp, toStatus(err)
	}
	rep, err := s.n.CleanupLocal(ctx, req.GetKeyspace())
	if errors.Is(err, replication.ErrKeyspaceNotFound) {
		return nil, toStatus(err)
	}
	res := &kvpb.CleanupKeyspaceResponse_Node{Id: s.n.cfg.ID, KeysScanned: uint64(rep.Scanned), KeysRemoved: uint64(rep.Removed)}
	if err != nil {
		res.Error = err.Error()
	}
	return &kvpb.CleanupKeyspaceResponse{Nodes: []*kvpb.CleanupKeyspaceResponse_Node{res}, Epoch: rep.Epoch}, nil
}
