// Command adaptkv is the single binary of adaptkv: it runs a node, starts and
// manages a local cluster of node processes for development, and talks to a
// cluster (data and keyspace commands, status).
//
//	adaptkv cluster up                 # 3 local nodes, data in ~/.adaptkv/local
//	adaptkv put hello world && adaptkv get hello
//	adaptkv keyspace create users --rf 3 --consistency quorum
//	adaptkv status
//	adaptkv cluster down --purge
//
// # Finding the cluster
//
// Data, keyspace and status commands connect to --endpoints (gRPC host:port
// addresses, comma-separated) when given, else to every node of the local
// cluster recorded in DIR/cluster.json (DIR is --dir, default
// $HOME/.adaptkv/local).
//
// # Environment
//
// Every flag can also be set with an environment variable ADAPTKV_<NAME>,
// the flag's name in upper case with '-' as '_': ADAPTKV_ENDPOINTS,
// ADAPTKV_DIR, ADAPTKV_OUTPUT, ADAPTKV_TIMEOUT, ... A flag given on the
// command line wins over the variable; an empty variable counts as unset.
//
// # Output
//
// -o table prints for people, -o json for programs. The default is table
// when stdout is a terminal and JSON otherwise, so that pipes and scripts
// get a stable, parseable format without asking for it.
//
// # Exit status
//
//	0  success
//	1  the operation failed; also `get` of a key that does not exist, so
//	   that scripts can tell "missing" from "empty" as with etcdctl
//	2  usage error: unknown command or flag, bad flag value, wrong arguments
//	3  a write's outcome is unknown: it may or may not have been applied
//	4  a conditional put or del (--if-version, --if-absent, --if-value)
//	   found its condition false: nothing was written, and the current
//	   value and version are reported
//
// Errors are one line on stderr: "adaptkv: <message>".
//
// # Contract
//
// The binary is thin: it turns flags (and ADAPTKV_ variables) into the
// configuration of a package and prints what the package returns. `adaptkv
// node` runs node.Start in this process and stops the node on SIGINT or
// SIGTERM; `cluster` starts and stops node processes of this same binary;
// the data, keyspace, status and tuner commands talk to a cluster through
// the SDK (package client); `bench` and `jepsen` hand over to the benchmark
// and Jepsen packages. Logic that a test or another program could use
// belongs in those packages, not here. Level names and error reasons come
// from package api, as the server and the SDK spell them.
//
// It may import any package of the module, and cobra and pflag for its
// command line; nothing imports it. Each command runs on the main
// goroutine and ends the goroutines it starts before it returns; the node
// processes of `cluster up` are the exception by design, running until
// `cluster down`. run returns the exit status, so that deferred cleanups run
// before os.Exit.
package main
