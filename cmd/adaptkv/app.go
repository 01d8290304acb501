package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/jepsen/jepsencmd"
)

// Exit statuses; see the package documentation.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitUnknown = 3
	// exitCondFailed: a conditional put or del whose condition did not
	// hold; nothing was written.
	exitCondFailed = 4
)

// app holds the global flags and the process's standard streams, which the
// commands share. Streams are fields rather than os.Std* so that the output
// helpers can tell whether stdout is a terminal.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	// Global flags.
	endpoints []string
	dir       string
	output    string
	timeout   time.Duration
	// certsDir, user and insecure say how to reach a secure cluster; see
	// clientSecurity.
	certsDir string
	user     string
	insecure bool
	// usedTLS and usedPlaintext record how the command's connections
	// went, for the hint on a failure (securityHint).
	usedTLS, usedPlaintext bool

	// started is set once a command's own code runs. An error before that
	// (unknown command or flag, wrong number of arguments) is a usage
	// error, which has its own exit status.
	started bool
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr}
}

// defaultDir is where `cluster up` keeps a local cluster unless --dir or
// ADAPTKV_DIR says otherwise: one fixed place, so that every later command
// finds the cluster without being told.
func defaultDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(os.TempDir(), "adaptkv-local")
	}
	return filepath.Join(home, ".adaptkv", "local")
}

// rootCommand builds the command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "adaptkv",
		Short: "adaptkv: a replicated key-value store with tunable consistency",
		Long: `adaptkv runs nodes, starts a local cluster, and reads and writes data.

Start a local 3-node cluster and try it:

  adaptkv cluster up
  adaptkv put hello world && adaptkv get hello

The cluster is secure: cluster up makes a CA, node and root client
certificates in <dir>/certs, and every command connects with them over
mutual TLS (see 'adaptkv cert --help'; --insecure for plaintext).

Every flag can also be set with ADAPTKV_<FLAG> (upper case, '-' as '_'),
for example ADAPTKV_ENDPOINTS=10.0.0.1:7400,10.0.0.2:7400.

Exit status: 0 success, 1 failure (also "get" of a missing key), 2 usage
error, 3 a write whose outcome is unknown (it may or may not have been applied),
4 a conditional put or del (--if-version, --if-absent, --if-value) whose
condition did not hold (nothing was written; the current value is reported).`,
		SilenceErrors: true, // report prints one line instead
		SilenceUsage:  true, // a failed request is not a reason to print usage
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return usageErr(err)
			}
			if _, err := a.format(); err != nil {
				return err
			}
			a.started = true
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringSliceVar(&a.endpoints, "endpoints", nil, "gRPC addresses (host:port) of cluster nodes, comma-separated; default: the local cluster in --dir")
	pf.StringVar(&a.dir, "dir", defaultDir(), "folder of the local cluster (cluster.json, node data and logs)")
	pf.StringVarP(&a.output, "output", "o", "", "output format: table or json (default: table on a terminal, json otherwise)")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of each request to the cluster, retries included")
	pf.StringVar(&a.certsDir, "certs-dir", "", "certificate directory (ca.crt, node.crt/.key, client.USER.crt/.key; see `adaptkv cert`); default: <--dir>/certs when it exists")
	pf.StringVar(&a.user, "user", security.RootUser, "user whose client certificate (client.USER.crt) the command connects with")
	pf.BoolVar(&a.insecure, "insecure", false, "plaintext and unauthenticated: talk to (or, for node and cluster up, run) a cluster without TLS; never on a shared network")

	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(
		a.nodeCommand(),
		a.certCommand(),
		a.clusterCommand(),
		a.putCommand(), a.getCommand(), a.delCommand(), a.scanCommand(),
		a.keyspaceCommand(),
		a.statusCommand(),
		a.tunerCommand(),
		a.doctorCommand(),
		a.keyringCommand(),
		a.userCommand(),
		jepsencmd.NewCommand(),
		benchCommand(),
		a.versionCommand(),
	)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return root
}

// usageError marks an error as the caller's mistake in invoking the command
// (exit status 2), as opposed to a failed operation.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErr(err error) error { return usageError{err} }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries a specific exit status with an already written message,
// such as the "not found" of get.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// report prints err as one line on stderr and returns the exit status.
func (a *app) report(cmd *cobra.Command, err error) int {
	var je *jepsencmd.ExitError
	if errors.As(err, &je) && (je.Printed || je.Err == nil) {
		return je.Code // the run's summary said it already
	}
	code := exitCode(err, a.started)
	msg := a.securityHint(describe(err))
	if code == exitUsage && cmd != nil {
		msg += fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())
	}
	fmt.Fprintf(a.stderr, "adaptkv: %s\n", msg)
	return code
}

// exitCode maps an error to the exit status documented in the package
// comment.
func exitCode(err error, started bool) int {
	var ee *exitError
	var ue usageError
	var je *jepsencmd.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &je):
		return je.Code
	case errors.As(err, &ue), !started:
		return exitUsage
	case isUnknownOutcome(err):
		return exitUnknown
	}
	return exitFailure
}

// cobraArgs wraps a cobra argument validator so that its errors are usage
// errors.
func cobraArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageErr(err)
		}
		return nil
	}
}
