// Package launch starts, stops, kills, pauses and waits for adaptkv node
// processes: real `adaptkv node` processes of a built binary, each with its
// own folder, log file, PID file and four ports. It is the one launcher of
// node processes, used by `adaptkv cluster`, the Jepsen harness
// (jepsen/cluster) and the benchmarks (bench/scenario, bench/overload).
//
//	cfg := launch.Config{Binary: bin, Nodes: 3, Dir: dir}
//	if err := cfg.Secure(filepath.Join(dir, "certs")); err != nil { ... } // or cfg.Insecure = true
//	c, err := launch.New(cfg)
//	...
//	defer c.Close()                  // SIGKILLs what c started
//	if err := c.Start(ctx); err != nil { ... }
//	kv, err := client.New(ctx, c.ClientConfig(client.Config{Endpoints: c.Endpoints()}))
//
// # Security
//
// Nodes run secure (--certs-dir Config.CertsDir) or, with Config.Insecure,
// plaintext (--insecure); New refuses a Config that says neither. Secure
// makes the certificates (CreateCerts: a CA, a node certificate naming the
// nodes' addresses, a root client certificate and gossip.key, each kept
// when it exists). ClientConfig and DialOption give the SDK and raw gRPC
// connections the root user's certificate, as WaitReady uses it.
//
// # Layout
//
// New fixes the layout before anything starts: node i is n<i>, its folder
// is Dir/n<i> (log node.log, PID file pid, data there or in DataSubdir),
// and its gRPC, gossip, Raft and HTTP ports are BasePort+stride*(i-1)+0..3
// on Host; or, with HostPerNode, the same four ports on its own loopback
// address Host+i-1, so that firewall rules between node addresses (the
// Jepsen harness's partitions) cut node-to-node traffic only. BasePort 0
// picks a free block below the ephemeral range, so that a restarted node
// gets its ports back. Every node's seeds are the others' gossip addresses.
// AddNode lays out one more node after New (the next address or port
// block), started with --bootstrap-expect 0 so that it joins the running
// cluster.
//
// # Processes
//
// StartNode starts a stopped node (a restart keeps its ID, addresses and
// data); Start starts every stopped node and waits until the cluster is
// ready. WaitReady's readiness is the cluster's own: each node answers
// /healthz and sees every awaited node alive in its ClusterStatus. Stop is
// SIGTERM and a wait (SIGKILL when the context ends), StopAll the same for
// every node with a timeout, Kill SIGKILL and a wait, Pause and Resume
// SIGSTOP and SIGCONT. A process that exits without being asked to is
// recorded as a crash (Crashes). Without Config.Detach the nodes are in
// their own process group and, on Linux, die with the launcher; with it
// they outlive it, and a later New on the same Dir adopts the ones still
// running from their PID files, checking that each PID is still that node
// (NodeRunning) before it would signal it.
//
// Network faults are not here: the Jepsen harness owns iptables
// (jepsen/cluster's Net).
//
// # What it may import
//
// The standard library, gRPC, the SDK (client, for ClusterStatus) and
// internal/security (certificates, which the SDK uses too). Never the
// server packages: it runs the binary, it does not link it. The SDK must
// not import this package (`go list -deps ./client` shows only api
// packages).
//
// # Concurrency
//
// A Cluster's methods may be called from several goroutines: each Node's
// process state is guarded by its own mutex, and one goroutine per started
// process waits for it and records its exit. Node's exported fields are
// fixed by New and only read after it.
package launch
