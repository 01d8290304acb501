// Package cluster runs a cluster of real adaptkv node processes on loopback
// for the Jepsen harness: node i binds gRPC, gossip, Raft and HTTP on its own
// address 127.0.0.(i+1), so that iptables rules between node addresses cut
// node-to-node traffic while the harness's clients (which connect from
// 127.0.0.1) keep reaching every node. It starts, stops, kills (SIGKILL),
// pauses (SIGSTOP/SIGCONT) and restarts nodes, talks to their test hooks,
// and manages the run's own iptables chain (see Net).
//
// Every process a Cluster starts is killed by Close, and, on Linux, by the
// kernel when the harness process dies (parent-death signal), so that a
// crashed or interrupted harness leaves no node behind.
//
// # What it owns and may import
//
// The processes themselves are node/launch's: a Cluster is a launch.Cluster
// laid out one address per node (launch.Config.HostPerNode), with the data
// of node <id> in Dir/<id>/data and its log in Dir/<id>/node.log, the test
// hooks switched on, and the harness's defaults (5 nodes from 127.0.0.2, a
// readiness bound of 60 s). This package adds what only Jepsen needs: the
// network faults (Net: an iptables chain of the run's own, partitions
// proven by probes) and a cached per-node client for each node's own view
// (Client, Status). It imports node/launch and the SDK, never the server's
// packages: the harness tests the binary, and its placement questions go to
// api/ring.
//
// # Concurrency
//
// A Cluster's methods may be called from several goroutines (the nemesis
// and the workload's clients run at once): the process state is guarded in
// node/launch, the client cache by the Cluster's mutex. A Net's methods
// may be called from several goroutines too: those that change rules hold
// its mutex while they run iptables.
package cluster
