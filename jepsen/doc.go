// Package jepsen is adaptkv's Jepsen-style consistency test harness: it
// runs a cluster of real node processes, drives concurrent clients through
// a workload while a nemesis injects faults, records every operation, and
// checks the history against the guarantees the documentation claims.
//
// # Design
//
// The vocabulary and the shape are Jepsen's; the Go side follows etcd's
// robustness tests:
//
//   - Cluster (package jepsen/cluster): node i is a real `adaptkv node`
//     process bound to its own loopback address 127.0.0.(i+1) for gRPC,
//     gossip, Raft and HTTP, with its data and log in the run folder. The
//     clients connect from 127.0.0.1, so partitions between node addresses
//     never cut a client off. Nodes are started with --unsafe-test-hooks,
//     through which the clock and slow faults act inside the node (tc/netem
//     does not work on loopback). Every process is killed on exit, on
//     Ctrl-C (context cancellation) and, through the parent-death signal,
//     when the harness itself dies.
//   - Workloads (this package): register (reads and writes of unique
//     integers per key, Keys keys at a time, each retired after OpsPerKey
//     operations so Porcupine's per-key histories stay small), set (each
//     add writes a fresh element's own key; reads of recent elements
//     measure visibility), session (each client reads and writes its own
//     keys, half its writes right after a read of the key). Clients are
//     routed (token-aware), pinned to one node, mixed, or hop: pinned to one
//     node at a time, moving to the next at the first read after a write,
//     so that a key's writes are coordinated in turn by nodes that never
//     stored its last version. Every write value is unique per key, so any value read names
//     its write. Operations are drawn from a seeded generator and paced by
//     a shared rate limiter over Concurrency workers; each worker is a
//     single-threaded logical process that moves to a fresh process number
//     after an info completion.
//   - Nemesis (package jepsen/nemesis): kill, pause, partition (halves,
//     majorities ring, isolate one, bridge; iptables DROP rules in the run's
//     own chain, confined to the run's ports so that another cluster on the
//     same addresses is not cut, proven by TCP probes between node
//     addresses before the harness trusts them, with the nodes' own failure
//     detection recorded as it happens), clock skew and slow replies (test hooks), and
//     drop-writes, a deliberately broken store that acknowledges writes
//     without storing them; membership:add, which starts one more node
//     on the next address that joins the running cluster and waits until
//     the ring makes it normal, membership:decommission, which takes a
//     live node off through `adaptkv node decommission` and waits until it
//     left and exited, and membership:replace, which SIGKILLs a node and
//     starts another with --replace in its place (the run's summary lists
//     each change and how it settled). The
//     schedule of fault windows depends only on the seed.
//   - History (package jepsen/history): every invocation and completion,
//     with process, client, key, value, times (monotonic, from the run's
//     start), consistency level, coordinator, configuration epoch, version
//     and acknowledgements from the receipt; nemesis actions and phase
//     markers in the same timeline; written as JSON lines as the run goes.
//     A completion is ok, fail (certainly no effect: a validation error,
//     NOT_ENOUGH_REPLICAS, a request that never left the client) or info
//     (a timeout, an unknown outcome, a write short of its W acks).
//   - Checkers (package jepsen/checker), pure functions of the history:
//     linearizability with Porcupine, partitioned per key, info writes
//     returning at +infinity, the first operation after which a key's
//     history has no linearization named with the writes around it; the
//     set checker (lost, recovered, unexpected); read-your-writes,
//     monotonic reads and read-then-writes per session (a write right after
//     the client's read through the same coordinator gets a version above
//     the one read, or last writer wins drops it); staleness per level (reads older, in
//     the store's version order, than the newest write acknowledged before
//     they began: how many, how many versions, how many ms, with a Wilson
//     interval; a stale read where R+W>N breaks the quorum claim);
//     no-phantom (no read returns a value no one wrote, or a failed
//     write's); convergence (after the heal, every replica of every key,
//     read with the replica-local LocalGet on the key's preference list
//     from the ring, holds the same version, the last-writer-wins winner
//     among the ok and info writes); and performance figures.
//   - Report (package jepsen/report and result.go): the run folder holds
//     config.json (the whole configuration, the fault schedule, and the
//     command that repeats the run), history.jsonl, results.json (the
//     verdict of each checker with its anomalies), summary.txt,
//     latency.png and throughput.png with the fault windows shaded,
//     linearizability.html (Porcupine's visualization, when linearizability
//     fails), jepsen.log, and nodes/<id>/node.log (and the nodes' data,
//     kept when an anomaly was found).
//
// A run goes through the phases setup, warmup (traffic only; no success at
// all makes the run void), faults (traffic and the nemesis schedule), heal
// (every fault undone: rules removed, nodes continued and restarted, hooks
// reset, and the cluster whole again), recovery (traffic; again at least
// one success is required), converge (hints drained, replica-local reads),
// final (every key read at level all; the set scans its elements at all),
// and check. Exit status: 0 valid, 1 an anomaly was found, 2 the run could
// not be done or decided.
//
// # Running it
//
// The Go API is Run(ctx, Config) and Analyze(ctx, dir, out). The command
// (package jepsen/jepsencmd, `adaptkv jepsen`) exposes the same:
//
//	adaptkv jepsen --nodes 5 --workload register --consistency quorum \
//	    --nemesis partition,kill --time 60s --rate 200 --concurrency 10 --seed 1 --out DIR
//	adaptkv jepsen analyze DIR
//	adaptkv jepsen --config DIR/config.json --out DIR2     # the same run again
//	adaptkv jepsen --dry-run ...                           # print the plan and schedule
//
// Partitions need root and iptables; without them a partition run stops at
// once and says which is missing.
//
// # Tests
//
// `go test ./jepsen/...` runs the checkers against small hand-made
// histories (linearizable and not), Porcupine on a simulated history of
// 5000 operations (and the same with one stale read planted), and short
// real runs of about 20 s each, in parallel on separate loopback /24s:
// register at one under partition and clock skew (not linearizable, the
// offending operations named), set with drop-writes on every node (lost
// writes), set at quorum without faults and under kill (nothing lost,
// staleness reported), set at one under partition (nothing lost once
// healed and the hints delivered), plus process control and the cleanup
// after an interrupted run. The partition tests skip, saying why, only
// when the machine is not root or has no working iptables. The tests build
// cmd/adaptkv once (or use $ADAPTKV_BIN).
//
// The long run, several seeds of minutes each over the workloads and the
// faults whose guarantees the documentation claims, failing on any
// violated claim (its register runs report linearizability without
// failing: quorum is not claimed linearizable), is one command:
//
//	JEPSEN_LONG=3m JEPSEN_SEEDS=1,2,3 go test ./jepsen -run TestLong -v -timeout 4h
//
// # Contract
//
// This package owns the workloads, the phases of a run, the run folder and
// the results; its sub-packages own the cluster processes, the faults, the
// history, the checkers and the plots. It tests the product from outside:
// it drives traffic through the SDK (package client), starts nodes as
// processes of the adaptkv binary, and never imports the server (node,
// replication, storage); from adaptkv it also imports package api (level
// names) and the ring, to compute each key's replicas for the convergence
// reads.
//
// Run blocks until the run is over: it owns the client workers, the nemesis
// goroutine and the node processes it starts, and ends all of them before
// it returns, on every path (an error, a canceled context). Runs share no
// state, so runs on separate address ranges may go on at once, as the tests
// do.
package jepsen
