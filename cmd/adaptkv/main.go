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
//
// Errors are one line on stderr: "adaptkv: <message>".
package main

import (
	"os"
)

func main() { os.Exit(run()) }

// run executes the command line and returns the process exit status. It is
// separate from main so that deferred cleanups run before os.Exit.
func run() int {
	a := newApp(os.Stdin, os.Stdout, os.Stderr)
	root := a.rootCommand()
	root.SetArgs(os.Args[1:])
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err)
}
