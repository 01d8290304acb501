// Package node wires one adaptkv process together: storage, gossip
// membership, the metadata log (Raft), the coordinator and replica of the
// data path, the anti-entropy pass, the tuner and the executor of its
// plans, the gRPC services (client, admin and peer APIs on one port), and
// the HTTP endpoint for metrics, pprof and health.
//
// # Contract: wiring only
//
// node holds no protocol logic. Each protocol lives in its own package and
// reaches the process through small interfaces that package declares and
// node implements:
//
//   - replication: the coordinator and replica (Transport, Topology,
//     Keyspaces, Observer, Fence); peerTransport carries peer requests
//     over gRPC, or to the local replica directly, through one generic
//     call.
//   - replication/antientropy: the repair pass (Replicas, Nodes, Topology,
//     Keyspaces); node builds its Runner, serves the Peer.Digest and
//     Peer.Repair RPCs and the Admin RepairKeyspace RPC, and maps the
//     pass's errors to statuses (repair.go).
//   - tuner and tuner/rollout: the decision and the execution of its plan
//     (rollout.Log, Cluster, Repairer); node runs the loop on the metadata
//     leader, gathers observations, records decisions and exports the
//     predicted-against-observed gauges (tuning.go).
//
// What node owns: Config and its validation, the process's lifecycle, the
// listeners, the metadata log's state machine (keyspaces, node numbers,
// decisions) and its Raft plumbing, the configuration lease, admission
// control of client requests, the peer write batcher, gRPC status mapping
// (ErrorInfo reasons, only those declared in package api, which the SDK
// maps exactly), metrics, and the unsafe test hooks.
//
// What it may import: everything below it (storage, replication and its
// sub-packages, tuner and its sub-packages, node/membership, the API), and
// the libraries it wires (grpc, hashicorp/raft, prometheus). No protocol
// package imports node; the binary, the in-process test cluster, Jepsen
// and the benchmarks start nodes through it. Only node/membership imports
// memberlist; only storage imports pebble.
//
// # Concurrency
//
// A Node is safe for concurrent use once Start returns. Its background
// loops (joining, Raft bootstrap, metadata leader duties, configuration
// lease, tuner, hint delivery, tombstone collection) each run on one
// goroutine started by Start and ended by Stop, which waits for them; request handlers run on gRPC's goroutines
// and share the node's state through atomics and immutable snapshots
// (membership views, the applied keyspace map). The tuner's decision loop
// and the plan executor run on the loop's one goroutine, one keyspace at a
// time.
//
// # Lifecycle
//
// Start opens the engine, binds every listener (port 0 picks a free one;
// Addrs reports what was bound), starts gossip and Raft, joins the seeds and
// serves. Stop shuts everything down without leaving the cluster: the other
// nodes see this node fail and keep its place on the ring, so that a restart
// (same ID, same data directory) picks up where it left off.
package node
