// Package jepsencmd is the `adaptkv jepsen` command: it runs the Jepsen
// harness (package jepsen) against real node processes and re-checks stored
// runs. The binary registers it with root.AddCommand(jepsencmd.NewCommand()).
//
// # Contract
//
// It owns the command line of the harness: flags, the config file, the
// dry-run plan, the exit codes (ExitError) and the progress output. It
// imports package jepsen, which does the work, and cobra; nothing of the
// server. The command runs on the caller's goroutine and returns once the
// run (and every process it started) has ended.
package jepsencmd
