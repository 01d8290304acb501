package replication

import (
	"context"
	"fmt"
	"slices"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/storage"
)

// This file holds the replica's side and the pure pieces of an anti-entropy
// repair pass; the pass itself (paging, fan-out, retries) is package
// replication/antientropy.
//
// # Repair
//
// Every node walks its own records of a keyspace, tombstones included, a
// page at a time. For each page it works out which other replicas should
// hold each record (PlanRepair), sends each of them the page's (key,
// version) pairs (Digest), and writes to each only the records it lacks or
// holds older (ChunkRecords bounds those writes). Replicas apply the pushed
// records with last-writer-wins, so a record pushed twice, or pushed while
// a newer write lands, is harmless.

// Digest reports which of the request's (key, version) pairs this replica
// lacks or holds at an older version. It reads only: the caller pushes the
// records afterwards with Write, under the same epoch check.
func (r *Replica) Digest(ctx context.Context, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	if err := r.checkEpoch(ctx, req.GetKeyspace(), req.GetEpoch()); err != nil {
		if ee, ok := err.(*EpochError); ok {
			return &kvpb.ReplicaDigestResponse{KnownEpoch: ee.Known}, nil
		}
		return nil, err
	}
	resp := &kvpb.ReplicaDigestResponse{}
	for i, e := range req.GetEntries() {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if len(e.GetKey()) == 0 {
			return nil, fmt.Errorf("digest entry %d: %w: empty key", i, ErrInvalidRequest)
		}
		// A version seen in a digest moves the clock like one stored: this
		// node may coordinate the next write of the key.
		r.clock.Observe(e.GetVersion().GetTimestamp())
		rec, ok, err := r.engine.Get(req.GetKeyspace(), e.GetKey())
		if err != nil {
			return nil, fmt.Errorf("replica digest: %w", err)
		}
		if !ok || rec.Version.Less(VersionFromPB(e.GetVersion())) {
			resp.Behind = append(resp.Behind, uint32(i))
		}
	}
	return resp, nil
}

// RepairBatch is one replica's share of a page of records: the indexes, in
// page order, of the records that Target should hold.
type RepairBatch struct {
	Target  string
	Records []int
}

// PlanRepair assigns each record of a page to the members that should hold
// it, other than self: the first n members of the key's preference list on
// rg. Batches come sorted by target, so that the same page and ring always
// give the same plan. It does no I/O: whether a target is alive is the
// caller's question.
func PlanRepair(keyspace string, recs []storage.Record, rg *ring.Ring, n int, self string) []RepairBatch {
	byTarget := map[string][]int{}
	buf := make([]string, 0, n)
	for i := range recs {
		buf = rg.AppendPreferenceList(buf[:0], keyspace, recs[i].Key, n)
		for _, id := range buf {
			if id != self {
				byTarget[id] = append(byTarget[id], i)
			}
		}
	}
	out := make([]RepairBatch, 0, len(byTarget))
	for id, idx := range byTarget {
		out = append(out, RepairBatch{Target: id, Records: idx})
	}
	slices.SortFunc(out, func(a, b RepairBatch) int {
		switch {
		case a.Target < b.Target:
			return -1
		case a.Target > b.Target:
			return 1
		}
		return 0
	})
	return out
}

// RecordSize is what a record weighs in a replica write: its key and value.
func RecordSize(rec storage.Record) int { return len(rec.Key) + len(rec.Value) }

// ChunkRecords splits idx (indexes into recs) into consecutive chunks of at
// most maxCount records whose keys and values add up to at most maxBytes,
// so that one replica write stays within the peer's message limit and one
// group commit stays small. A record larger than maxBytes goes alone.
// maxCount and maxBytes below 1 count as 1.
func ChunkRecords(recs []storage.Record, idx []int, maxCount, maxBytes int) [][]int {
	maxCount, maxBytes = max(maxCount, 1), max(maxBytes, 1)
	var out [][]int
	start, size := 0, 0
	for i, j := range idx {
		s := RecordSize(recs[j])
		if i > start && (i-start >= maxCount || size+s > maxBytes) {
			out = append(out, idx[start:i:i])
			start, size = i, 0
		}
		size += s
	}
	if start < len(idx) {
		out = append(out, idx[start:len(idx):len(idx)])
	}
	return out
}
