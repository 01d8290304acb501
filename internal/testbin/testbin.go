// Package testbin builds the adaptkv binary for the tests that run real node
// processes (node/launch, cmd/adaptkv, the Jepsen harness, the scenarios).
// It is test support: nothing in the product imports it.
package testbin

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Build builds cmd/adaptkv into dir and returns the binary's path. It builds
// without -race even under `go test -race`: the nodes are the system under
// test, not the test's own code, and a race-instrumented node is several
// times slower on a small machine. The build is bounded to five minutes.
func Build(dir string) (string, error) {
	out := filepath.Join(dir, "adaptkv")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/adaptkv/adaptkv/cmd/adaptkv")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/adaptkv: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// Main is a TestMain for a package whose tests all need the binary: it
// builds it into a temporary folder, stores its path in *bin, runs the
// tests and removes the folder. A failed build fails the package.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "adaptkv-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Lazy is the binary of a package only some of whose tests need it (they
// start node processes and are skipped with -short): MainUnlessShort builds
// it, and Need skips or fails a test that needs it.
type Lazy struct {
	// Path is the built binary; empty when -short or when the build
	// failed (Err says why).
	Path string
	Err  error
}

// MainUnlessShort is a TestMain that builds the binary into a temporary
// folder unless -short, runs the tests and removes the folder. A failed
// build fails the tests that call Need, not the package.
func MainUnlessShort(m *testing.M, b *Lazy) {
	flag.Parse()
	var dir string
	if !testing.Short() {
		var err error
		if dir, err = os.MkdirTemp("", "adaptkv-bin-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b.Path, b.Err = Build(dir)
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Need skips t under -short (why says what it would start) and fails it
// when the build failed.
func (b *Lazy) Need(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + "; skipped with -short")
	}
	if b.Path == "" {
		t.Fatal(b.Err)
	}
}
