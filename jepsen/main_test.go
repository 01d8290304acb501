package jepsen

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/adaptkv/adaptkv/internal/testbin"
	"github.com/adaptkv/adaptkv/jepsen/cluster"
)

// nodeBin is the adaptkv binary built for the tests (or $ADAPTKV_BIN),
// built on first use; buildErr says why it could not be built.
var (
	buildOnce sync.Once
	binDir    string
	nodeBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildNode builds cmd/adaptkv (without -race: the nodes are the system
// under test, not the code under test, and run faster without it).
func buildNode(dir string) (string, error) {
	if b := os.Getenv("ADAPTKV_BIN"); b != "" {
		return b, nil
	}
	return testbin.Build(dir)
}

// needCluster skips a test in -short mode and fails it when the node binary
// could not be built.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster of node processes; skipped in -short mode")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "adaptkv-jepsen-bin-")
		if buildErr == nil {
			nodeBin, buildErr = buildNode(binDir)
		}
	})
	if buildErr != nil {
		t.Fatalf("node binary: %v", buildErr)
	}
}

// needNet skips a test that needs partitions when this machine cannot make
// them (not root, or no working iptables), saying which.
func needNet(t *testing.T) {
	t.Helper()
	if err := cluster.CheckNet(context.Background()); err != nil {
		t.Skipf("partition test skipped: %v", err)
	}
}
