// Package antientropy runs adaptkv's anti-entropy repair pass: a
// comparison of a keyspace's replicas (Merkle trees per token range, or a
// digest per record) that brings each one up to date with the newest
// version any of them holds.
//
// # What a pass guarantees
//
// When Runner.Run returns without error, every replica of every key that
// was alive throughout the pass holds at least the newest version of the
// key that any of those replicas held when the pass started, tombstones
// included. "Replica" means the first N members of the key's preference
// list on the current ring, N being the keyspace's replication factor or
// the larger Options.ReplicationFactor (which streams data to the replicas
// a larger N would add, before N is raised).
//
// # How
//
// The node that runs the pass (Runner.Run) fans it out to every alive ring
// member (Nodes.RunPart, which runs Runner.RunPart there) and runs its own
// part locally. Each node pushes what it holds to the replicas that lack
// it; it never pulls (the other replicas' parts push to it). How a node
// finds what the others lack is Options.Method.
//
// # The merkle method (the default)
//
//  1. The node scans its records of the keyspace once into an index: each
//     record's ring token and RecordHash (key, version, tombstone; not the
//     value), sorted by token. The index is kept for the pass (TreeCache,
//     by Options.PassID) and also answers the comparisons other nodes send.
//  2. It cuts the ring into ranges with the same replica set
//     (ring.Ranges(N), neighbours merged) and builds, for each range where
//     it holds records, a Tree of 2^MerkleDepth leaves by token sub-range
//     (merkle.go: pure, computed on demand from the sorted records).
//  3. With each other replica (Replicas.CompareTrees, served by
//     Runner.CompareTrees there) it first compares one hash over every
//     range both replicate, with a hash of their bounds so that replicas
//     whose rings differ do not compare different ranges. Replicas that
//     agree stop there: one hash per pair of replicas. Otherwise it sends
//     the roots of the ranges where it holds records, then, for each node
//     that differs, its descendants four levels down (where it holds
//     records), until the leaves.
//  4. It scans again and, for the records under differing leaves, does
//     what the digest method does for every record: digests, then pushes.
//
// Ranges where the node holds records without being a replica (left over
// after N shrank) are compared with their replicas root first, so those
// records reach them too.
//
// # The digest method
//
// Each node walks its own records of the keyspace in key order, a page at
// a time (tombstones included), and for each page:
//
//  1. works out which other replicas should hold each record
//     (replication.PlanRepair on its current ring);
//  2. sends each of them the page's (key, version) pairs for that replica
//     (Replicas.Digest, served by replication.Replica.Digest) and learns
//     which it lacks or holds older;
//  3. writes just those records to it (Replicas.Write, the replica's
//     ordinary last-writer-wins apply under the epoch check), in chunks
//     bounded by count and bytes.
//
// A digest entry is the key and 12 bytes of version; a push carries the
// value too. With Options.PushAll every comparison is skipped and every
// record is pushed to every other replica; that mode is kept to measure
// the difference (BenchmarkRepair and BenchmarkRepairInSync in
// node/repair_test.go, figures in BENCHMARKS.md).
//
// Last writer wins makes every step idempotent: a record pushed twice (two
// nodes held it) or overtaken by a newer write is harmless, and a pass that
// failed half way can simply be run again.
//
// # Bounds
//
// Memory: one page of records per node (PageSize records; values are up to
// the node's value limit, so a page of 256 can reach 256 MiB in the worst
// case of 1 MiB values) plus the digests of that page; with the merkle
// method also the index, 16 bytes per record of the keyspace, and the
// trees, 12 more, for the length of the pass (an index unused for two
// minutes is dropped). Network: Options.RateLimit paces the bytes each
// node's part sends. Concurrency: each
// node talks to at most Concurrency replicas at once; pages are sequential.
// Cancelling the caller's context stops every node's part. An
// Options.Exclusive pass (the node's scheduled ones) is refused on a node
// where another pass of the keyspace runs (ErrPassRunning), so scheduled
// passes never overlap.
//
// # Failures
//
// A pass is all or nothing to its caller: when a node cannot run or finish
// its part, or a replica cannot be compared with or written to after a few
// attempts, the other nodes are stopped and Run fails with an
// *IncompleteError (ErrIncomplete) naming the node and the cause. A ring
// member that gossip reports down fails the pass before it starts, unless
// AllowDown is set: its replicas would not be repaired.
//
// Tombstones are collected after the node's tombstone grace period; a pass
// must complete within that period after a delete, or a replica that
// missed the delete can bring the value back (as in Cassandra, whose
// gc_grace_seconds has the same rule).
//
// # Contract
//
// The package owns the pass's logic: paging, planning, trees, digests,
// pushes, retries, pacing, the fan-out over nodes and the report. It does no networking of
// its own: it reaches other replicas through Replicas, other nodes' parts
// through Nodes, the cluster through Topology and the metadata through
// Keyspaces, all implemented by the node package (over gRPC) or, in tests,
// by in-process fakes over real engines and replicas; the node serves
// Runner.CompareTrees as Peer.CompareTrees. It imports storage,
// replication and api/ring, the generated API types, protobuf (to count
// the bytes a pass sends), xxhash (the trees' hashes), and gRPC's status
// codes only to classify the errors peers return; never node.
//
// Concurrency: a Runner is safe for concurrent use once its fields are set
// and never changed; its implementations of Replicas, Nodes, Topology and
// Keyspaces must be safe for concurrent use, since a pass calls them from
// one goroutine per replica (within a part) and one per node (in Run).
// Progress callbacks are never called concurrently (see Run and RunPart).
package antientropy
