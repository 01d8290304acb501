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
// # How cost grows
//
// --sweep clients=1,8,32,128,512 (or value-size=128,1024,16384, or
// records=100000,1000000) runs the chosen systems, workloads and levels at
// each value with every other setting fixed, in one run: a clients sweep
// loads each system once and measures every phase at each number of
// clients; a value-size or records sweep starts every system afresh at
// each value. The report is a table per phase and value (throughput, p50,
// p99, errors, CPU microseconds per operation of the servers and of the
// client process apart), adaptkv's ratios at each value, and --plot
// writes a PNG with one panel per metric and one line per system and
// setting on a log x axis. Progress goes to the log as it runs.
//
// --bulk-load loads each system through the fastest path its client
// offers that still stores the records as the phases find them: adaptkv
// through 48 concurrent SDK inserts at one (the SDK coalesces them on its
// Batch stream to each node; every replica still writes and fsyncs), etcd
// through Txns of 128 puts, Redis through pipelines of 512 SETs. etcd's
// backend quota is raised to 8 GiB when the records would not fit in its
// default 2 GiB.
//
// # CPU budget and where the time goes
//
// Every report has a table of CPU microseconds per operation for each
// phase, servers' processes and the client process apart (from /proc),
// and the total over the echo floor's. With --profile DIR, the CPU
// profiles of node n1 and of the client process taken during each adaptkv
// phase are read back with pprof's parser and every sample is put in a
// bucket by its stack (gRPC server, gRPC client, HTTP/2 framing, TLS,
// protobuf, storage/pebble, fsync, other syscalls, replication and node
// logic, SDK, workload generator, GC/runtime): the report gives each
// bucket's share and its µs per operation, and the top functions in it.
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
