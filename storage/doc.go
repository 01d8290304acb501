// Package storage keeps one node's replicas of the data: versioned records,
// last-writer-wins, tombstones collected after a grace period, atomic and
// durable batches, and ordered range scans.
//
// Two engines implement Engine: Pebble (github.com/cockroachdb/pebble, on
// disk, the default) and Memory (github.com/google/btree, for tests and for
// nodes that are told to keep nothing). Both pass the same test suite.
//
// # Durability
//
// Engine.Apply returns only after its records are on disk (Pebble). Concurrent
// callers share one fsync: a single committer goroutine collects the mutations
// that arrive while the previous fsync runs, merges them with last-writer-wins
// against what is stored, and commits them as one synced batch (group commit).
// Because one goroutine does every read-compare-write, no key lock is needed.
//
// # Versions
//
// A Version is a hybrid logical clock timestamp plus the coordinator's node
// number; the greater version wins. A tombstone is a record with Tombstone set;
// it is kept like any record until CollectTombstones finds it older than the
// grace period, so that a replica that missed the delete cannot bring the value
// back through repair in the meantime.
//
// # What else it owns
//
// The byte layout of records in pebble's key space (codec.go), the row cache
// in front of pebble, RaftStore (the metadata log's raft.LogStore and
// raft.StableStore, on a pebble database of its own), PowerCutFS for
// power-cut tests, and the creation of data directories that survive a cut
// (their parents are synced).
//
// # Imports
//
// storage is the only package that imports pebble (and its vfs and bloom
// packages); besides the standard library it imports google/btree (Memory),
// an LRU, and hashicorp/raft for the interfaces RaftStore implements. It
// imports nothing else of adaptkv: replication and node use it, never the
// other way round.
//
// # Concurrency
//
// Every Engine method is safe for concurrent use, and so are RaftStore and
// PowerCutFS. Pebble's writes all pass through its one committer goroutine
// (see Durability), so writers wait for an fsync they share but never for a
// lock on a key; readers go straight to pebble (or the row cache) and
// never wait for the committer. Close waits for the committer and for
// readers in progress; every call after it returns ErrClosed.
package storage
