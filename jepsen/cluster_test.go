package jepsen

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/cluster"
)

// killAtCleanup kills the given processes when the test ends, whatever
// happened to the code that should have.
func killAtCleanup(t *testing.T, pids map[string]int) {
	t.Helper()
	for _, pid := range pids {
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
}

// alive reports whether a process exists (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// procState returns the state letter of a process (R, S, T, Z...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ...; comm may hold spaces, so cut at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// processesUnder returns the PIDs of running processes whose command line
// mentions dir (the nodes of a run keep their data there).
func processesUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// ourChains lists the iptables chains this test process created.
func ourChains() []string {
	out, err := exec.Command("iptables", "-w", "-S").Output()
	if err != nil {
		return nil
	}
	prefix := fmt.Sprintf("%s%d-", cluster.ChainPrefix, os.Getpid())
	var chains []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], prefix) {
			chains = append(chains, f[1])
		}
	}
	return chains
}

// TestClusterControl starts three node processes on their own loopback
// addresses and shows that the harness controls them: kill (SIGKILL) and
// restart, pause (SIGSTOP) and resume, the test hooks, and, where iptables
// works, a partition that is proven by probes, spares the clients on
// 127.0.0.1, heals, and leaves no chain behind.
func TestClusterControl(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := cluster.New(cluster.Config{Bin: nodeBin, Nodes: 3, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i, n := range c.Nodes() {
		if want := fmt.Sprintf("127.0.0.%d", i+2); n.Host != want {
			t.Fatalf("%s on %s, want %s", n.ID, n.Host, want)
		}
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, c.PIDs())
	pids := c.PIDs()
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}

	// Kill and restart.
	if err := c.Kill("n3"); err != nil {
		t.Fatal(err)
	}
	if alive(pids["n3"]) {
		t.Fatalf("n3 (pid %d) still alive after SIGKILL", pids["n3"])
	}
	if c.Node("n3").State() != cluster.Stopped || c.Healthz(ctx, "n3") == nil {
		t.Fatal("n3 still serves after kill")
	}
	if err := c.StartNode("n3"); err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, c.PIDs())
	if err := c.WaitReady(ctx, c.IDs()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if c.PIDs()["n3"] == pids["n3"] {
		t.Error("restart kept the old pid")
	}

	// Pause and resume.
	if err := c.Pause("n2"); err != nil {
		t.Fatal(err)
	}
	if st := procState(pids["n2"]); st != "T" {
		t.Errorf("paused n2 in state %q, want T (stopped)", st)
	}
	hctx, hc := context.WithTimeout(ctx, 500*time.Millisecond)
	if err := c.Healthz(hctx, "n2"); err == nil {
		t.Error("paused n2 answered")
	}
	hc()
	if err := c.Resume("n2"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, c.IDs()); err != nil {
		t.Fatalf("after resume: %v", err)
	}

	// Hooks.
	if err := c.Hook(ctx, "n1", "clock", url.Values{"offset": {"-2s"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Hook(ctx, "n1", "reset", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Hook(ctx, "n1", "clock", url.Values{"offset": {"soon"}}); err == nil {
		t.Error("bad hook parameter accepted")
	}

	// Partition.
	if err := cluster.CheckNet(ctx); err != nil {
		t.Logf("partition part skipped: %v", err)
	} else {
		net, err := cluster.NewNet(ctx, c.Hosts(), c.Ports(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { net.Close() })
		g := cluster.Grudge{"n1": {"n2", "n3"}, "n2": {"n1"}, "n3": {"n1"}}
		if err := net.Partition(ctx, g); err != nil {
			t.Fatal(err)
		}
		proof, err := c.VerifyPartition(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(proof)
		// Clients on 127.0.0.1 still reach every node.
		for _, id := range c.IDs() {
			if err := c.Healthz(ctx, id); err != nil && !strings.Contains(err.Error(), "503") {
				t.Errorf("client cut off from %s by a partition between nodes: %v", id, err)
			}
		}
		// A wrong claim is caught.
		if _, err := c.VerifyPartition(ctx, cluster.Grudge{}); err == nil {
			t.Error("verification accepted a healed network while partitioned")
		}
		if err := net.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyPartition(ctx, cluster.Grudge{}); err != nil {
			t.Fatal(err)
		}
		chain := net.Chain()
		if err := net.Close(); err != nil {
			t.Fatal(err)
		}
		if cluster.ChainExists(ctx, chain) {
			t.Errorf("chain %s left behind", chain)
		}
	}

	all := c.PIDs()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for id, pid := range all {
		if alive(pid) {
			t.Errorf("%s (pid %d) alive after Close", id, pid)
		}
	}
}

// TestRunInterruptedCleansUp cancels a run in its fault phase, as Ctrl-C
// does, and checks that the run ends promptly, says it was interrupted
// (exit status 2), and leaves no node process and no iptables chain.
func TestRunInterruptedCleansUp(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadRegister, "quorum", "kill")
	if cluster.CheckNet(context.Background()) == nil {
		cfg.Nemesis = "partition,kill"
	}
	cfg.Nodes, cfg.RF = 3, 3
	cfg.Time = Duration(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the fault phase has started.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if b, err := os.ReadFile(filepath.Join(cfg.Out, HistoryFile)); err == nil && bytes.Contains(b, []byte(`"phase":"faults"`)) {
				time.Sleep(2 * time.Second)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("interrupted run returned after %v", took)
	if took > 45*time.Second {
		t.Errorf("interrupted run took %v", took)
	}
	if res.ExitCode() != ExitNotDone && res.ExitCode() != ExitAnomaly {
		t.Errorf("exit %d, want 2", res.ExitCode())
	}
	found := false
	for _, e := range res.HarnessErrors {
		found = found || strings.Contains(e, "interrupted")
	}
	if !found {
		t.Errorf("harness errors do not say it was interrupted: %v", res.HarnessErrors)
	}
	if left := processesUnder(cfg.Out); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("processes left running: %v", left)
	}
	if ch := ourChains(); len(ch) > 0 {
		t.Errorf("iptables chains left: %v", ch)
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, ResultsFile)); err != nil {
		t.Errorf("no results.json: %v", err)
	}
}
