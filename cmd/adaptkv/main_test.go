package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/testbin"
	"github.com/adaptkv/adaptkv/node/launch"
)

// binPath is the adaptkv binary built once by TestMain; the process tests
// drive it like a user would.
var binPath string

func TestMain(m *testing.M) { testbin.Main(m, &binPath) }

// Base ports handed to the tests' clusters. Each test gets its own block,
// checked free, so that parallel tests never collide; the start is random
// so that two test processes (go test -count, another package) rarely walk
// the same blocks.
var (
	portMu   sync.Mutex
	portNext = 10000 + portStride*rand.IntN(1000)
)

func allocBasePort(t *testing.T, n int) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := 10000, launch.EphemeralLow()-portStride*n
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = "127.0.0.1"
	}
	for range 1000 {
		base := portNext
		portNext += portStride * (n + 1)
		if portNext > hi {
			portNext = lo
		}
		if launch.PortsFree(hosts, base, portStride) {
			return base
		}
	}
	t.Fatal("no free block of ports")
	return 0
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// testCluster is a local cluster started through the binary in a test's
// own folder.
type testCluster struct {
	t   *testing.T
	dir string
}

// startCluster runs `adaptkv cluster up` for a test. Every node process is
// SIGKILLed by PID when the test ends, whatever happened.
func startCluster(t *testing.T, nodes int) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, dir: t.TempDir()}
	// Registered after TempDir, so it runs before the folder is removed.
	t.Cleanup(tc.killAll)
	start := time.Now()
	r := tc.run(nil, "cluster", "up", "--nodes", strconv.Itoa(nodes), "--base-port", strconv.Itoa(allocBasePort(t, nodes)), "-o", "json")
	if r.code != 0 {
		tc.dumpLogs()
		t.Fatalf("cluster up: %v", r)
	}
	var up upJSON
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil {
		t.Fatalf("cluster up output: %v\n%s", err, r.stdout)
	}
	t.Logf("cluster up: %d nodes in %.2fs to the first acknowledged write (command took %.2fs)", nodes, up.FirstWriteSeconds, time.Since(start).Seconds())
	return tc
}

// killAll SIGKILLs every node process the test's cluster started: the PIDs
// in the PID files, checked to still be this cluster's nodes.
func (tc *testCluster) killAll() {
	files, _ := filepath.Glob(filepath.Join(tc.dir, "*", "pid"))
	var nodes []launch.Proc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		n := nodeEntry{ID: filepath.Base(filepath.Dir(f)), PID: pid}
		if n.running() {
			syscall.Kill(pid, syscall.SIGKILL)
			nodes = append(nodes, launch.Proc{ID: n.ID, PID: pid})
		}
	}
	if left := launch.WaitGone(nodes, 10*time.Second); len(left) > 0 {
		tc.t.Errorf("node processes still running after SIGKILL: %v", left)
	}
}

// dumpLogs logs the tail of every node log, for failures.
func (tc *testCluster) dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(tc.dir, "*", "node.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		tc.t.Logf("--- %s (tail)\n%s", f, b)
	}
}

// run runs the binary with ADAPTKV_DIR set to the cluster's folder and no
// other ADAPTKV_ variable from the test's environment.
func (tc *testCluster) run(stdin io.Reader, args ...string) result {
	return runBin(tc.t, []string{envName("dir") + "=" + tc.dir}, stdin, args...)
}

// mustRun is run that fails the test unless the command succeeds.
func (tc *testCluster) mustRun(args ...string) result {
	tc.t.Helper()
	r := tc.run(nil, args...)
	if r.code != 0 {
		tc.t.Fatalf("adaptkv %s: %v", strings.Join(args, " "), r)
	}
	return r
}

func runBin(t *testing.T, env []string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running adaptkv %v: %v", args, err)
	}
	return r
}

// layout reads the cluster's cluster.json.
func (tc *testCluster) layout() *layout {
	tc.t.Helper()
	l, err := loadLayout(tc.dir)
	if err != nil {
		tc.t.Fatal(err)
	}
	return l
}

func (tc *testCluster) endpoints() []string {
	var eps []string
	for _, n := range tc.layout().live() {
		eps = append(eps, n.GRPCAddr)
	}
	return eps
}

// client returns an SDK client for the cluster, closed when the test ends.
func (tc *testCluster) client(cfg client.Config) *client.Client {
	tc.t.Helper()
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = tc.endpoints()
	}
	cfg = tc.layout().clientConfig(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { c.Close() })
	return c
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
