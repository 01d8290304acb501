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
