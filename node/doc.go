// Package node wires one adaptkv process together: storage, gossip
// membership, the metadata log (Raft), the coordinator and replica of the
// data path, the gRPC services (client, admin and peer APIs on one port),
// and the HTTP endpoint for metrics, pprof and health. It holds no protocol
// logic of its own.
//
// # Lifecycle
//
// Start opens the engine, binds every listener (port 0 picks a free one;
// Addrs reports what was bound), starts gossip and Raft, joins the seeds and
// serves. Stop shuts everything down without leaving the cluster: the other
// nodes see this node fail and keep its place on the ring, so that a restart
// (same ID, same data directory) picks up where it left off.
//
// # What it owns
//
//   - Config and its defaults: every knob of a node process, which
//     cmd/adaptkv fills from flags.
//   - The gRPC services: the client API (kvpb.KV), the admin API
//     (kvpb.Admin, forwarded once to the metadata leader) and the peer API
//     (kvpb.Peer, handed to replication.Replica), their input checks, and
//     the mapping of every internal error to a gRPC status whose
//     google.rpc.ErrorInfo carries an api reason (toStatus, withReason).
//     Only reasons declared in package api are sent: the SDK maps exactly
//     those.
//   - The admission bound on client requests in flight (Config.MaxInflight).
//   - The metadata log: the Raft group, its state machine (keyspace
//     definitions, node numbers, tuner decisions) and the configuration
//     lease that fenced keyspaces are served under. Levels are stored by
//     their api names ("quorum", "custom").
//   - The peer transport: gRPC connections to the other nodes, write
//     batching, and the shortcut to the local replica.
//   - The shell of the tuner: it feeds tuner.Recorder from the coordinator,
//     calls tuner.Decide on the metadata leader and carries out the plan
//     through the metadata log; and the repair passes the plans (and
//     `adaptkv keyspace repair`) run.
//   - Metrics (Prometheus), health, pprof, and the fault-injection hooks of
//     Config.UnsafeTestHooks.
//
// # Imports
//
// node may import every package of the server: api, api/kvpb, storage,
// replication and its sub-packages, node/membership and tuner, plus gRPC,
// hashicorp/raft and Prometheus. It reaches pebble only through storage and
// memberlist only through node/membership. Nothing imports node except the
// binary (cmd/adaptkv) and test harnesses; in particular the SDK (client)
// never does.
//
// # Concurrency
//
// Every method of a started *Node is safe for concurrent use. Start runs the
// background loops (joining, Raft bootstrap, the leader's duties, hint
// delivery, tombstone collection, the tuner, the lease), each through one
// tracked goroutine; Stop is idempotent, ends them all and waits for them,
// so a stopped node leaves no goroutine behind (the package's TestMain
// checks it with goleak). The state machine's keyspace definitions are
// replaced as a whole and read through an atomic pointer, so the request
// path takes no lock to read a configuration; Raft applies entries one at a
// time.
package node
