// Command compare runs the same YCSB workloads, through the same workload
// generator (package bench), against a 3-node adaptkv cluster, a
// 3-member etcd cluster, a single Redis with appendfsync always (the
// single-node ceiling) and a bare gRPC echo server (the floor of any
// gRPC-based store), one system at a time on this machine, and prints a
// markdown table of throughput and latency with adaptkv's ratios to the
// others.
//
// It lives in a module of its own so that adaptkv's go.mod does not depend
// on etcd. Every server runs in a process of its own: the etcd members and
// the echo server are this binary re-executed (embed.StartEtcd), the adaptkv
// nodes are `adaptkv node` processes built from the repository (or, if that
// does not build, this binary re-executed around node.Start), and Redis is
// Debian's redis-server.
//
//	cd bench/compare && go run . --out results.md
//
// Systems run one after the other, each started fresh, loaded once and then
// measured per workload and setting; nothing else of the comparison runs
// meanwhile, so that each gets the whole machine.
//
// # Transport security
//
// --tls on (the default) runs adaptkv and etcd with mutual TLS 1.3 on
// their client and peer links, certificates made with adaptkv's own tool
// (internal/security through launch.CreateCerts) for both; --tls off runs
// both plaintext; --tls both (or off,on) runs each system twice, on a
// fresh cluster each time, and the report adds the cost of TLS to each
// system (throughput, latency and CPU per operation with TLS over
// without) and whether adaptkv's loss is no larger than etcd's. Redis and
// the echo floor are always plaintext.
//
// # What it may import
//
// adaptkv's benchmark tool (bench: the same generator and report for every
// system), the SDK, and node (only for the re-executed fallback, which
// runs node.Start in a child); and etcd, Redis's client and gRPC, which is
// why it is a module of its own (go.mod here, with a replace directive to
// the repository two folders up): adaptkv's own go.mod stays free of
// etcd. Its server processes are its own (proc.go), not node/launch's:
// most of them are not adaptkv nodes.
//
// # Concurrency
//
// One system runs at a time; each system's servers are child processes
// that die with this one (parent-death signal on Linux), and its load is
// bench's closed-loop runner.
package main
