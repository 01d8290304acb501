// Package scenariocmd holds what the commands of `adaptkv bench
// --scenario ...` share: which binary starts the nodes, and the context
// that an interrupt cancels.
package scenariocmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Binary is the --binary flag's value, or the running executable when it
// is empty: a scenario starts its nodes from the binary it runs in.
func Binary(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("--binary: finding the running executable: %w", err)
	}
	return exe, nil
}

// Context is cmd's context (a background one when it was executed without
// one), cancelled on SIGINT or SIGTERM so that a scenario stops its nodes.
func Context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
