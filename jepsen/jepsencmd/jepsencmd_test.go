package jepsencmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen"
)

// execute runs the command with args and returns its output and exit
// status.
func execute(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), ExitCode(err)
}

func TestHelpNamesTheFlags(t *testing.T) {
	out, code := execute(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, f := range []string{"--nodes", "--workload", "--consistency", "--nemesis", "--time", "--rate", "--concurrency", "--seed", "--out", "analyze", "--dry-run", "--config"} {
		if !strings.Contains(out, f) {
			t.Errorf("help lacks %s", f)
		}
	}
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"--workload", "bank", "--dry-run"},
		{"--nemesis", "meteor", "--dry-run"},
		{"--consistency", "strong", "--dry-run"},
		{"--nodes", "many"},
		{"analyze"},
		{"analyze", "/nonexistent/run"},
	} {
		if _, code := execute(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestDryRunIsReproducible: the same flags and seed give the same fault
// schedule; the printed command repeats it; --config reuses a stored
// configuration with flags overriding it.
func TestDryRunIsReproducible(t *testing.T) {
	args := []string{"--dry-run", "--nodes", "5", "--workload", "set", "--consistency", "one,quorum", "--nemesis", "partition,kill,clock",
		"--time", "60s", "--rate", "150", "--concurrency", "7", "--seed", "42"}
	a, code := execute(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, a)
	}
	b, _ := execute(t, args...)
	if a != b {
		t.Fatal("same seed, different plans")
	}
	var plan jepsen.Plan
	if err := json.Unmarshal([]byte(a), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Config.Workload != "set" || plan.Config.Rate != 150 || plan.Config.Concurrency != 7 || plan.Config.Seed != 42 ||
		len(plan.Config.Consistency) != 2 || len(plan.Schedule) != 3 {
		t.Fatalf("plan %+v", plan)
	}
	// The printed command gives the same plan.
	fields := strings.Fields(plan.Command)[2:]
	c, code := execute(t, append(fields, "--dry-run")...)
	if code != 0 || c != a {
		t.Errorf("the recorded command %q does not repeat the plan:\n%s\nvs\n%s", plan.Command, c, a)
	}
	// A different seed gives another schedule.
	d, _ := execute(t, append(args[:len(args)-1], "43")...)
	if d == a {
		t.Error("different seed, same plan")
	}
	// --config with an override.
	dir := t.TempDir()
	doc, _ := json.Marshal(map[string]any{"config": plan.Config, "command": plan.Command})
	os.WriteFile(filepath.Join(dir, jepsen.ConfigFile), doc, 0o644)
	e, code := execute(t, "--config", dir, "--seed", "7", "--dry-run")
	if code != 0 {
		t.Fatalf("--config: exit %d: %s", code, e)
	}
	var p2 jepsen.Plan
	json.Unmarshal([]byte(e), &p2)
	if p2.Config.Seed != 7 || p2.Config.Workload != "set" || p2.Config.Rate != 150 || p2.Config.Nemesis != "partition,kill,clock" {
		t.Errorf("--config plan %+v", p2.Config)
	}
}

// TestRunAndAnalyze runs a short test through the command (three nodes,
// no fault, on 127.0.6.x so that it does not meet the jepsen package's
// clusters), then re-checks it with `analyze`.
func TestRunAndAnalyze(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes; skipped in -short mode")
	}
	bin := os.Getenv("ADAPTKV_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "adaptkv")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/adaptkv/adaptkv/cmd/adaptkv").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v: %s", err, out)
		}
	}
	dir := filepath.Join(t.TempDir(), "run")
	out, code := execute(t, "--workload", "session", "--consistency", "quorum", "--nemesis", "none", "--nodes", "3",
		"--time", "3s", "--warmup", "1s", "--recovery", "1s", "--rate", "50", "--concurrency", "4",
		"--first-ip", "127.0.6.2", "--bin", bin, "--out", dir, "-q")
	if code != 0 {
		t.Fatalf("run exit %d:\n%s", code, out)
	}
	for _, want := range []string{"verdict: VALID", "session", "staleness", "run folder: " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	out, code = execute(t, "analyze", dir)
	if code != 0 || !strings.Contains(out, "verdict: VALID") {
		t.Errorf("analyze exit %d:\n%s", code, out)
	}
	res, err := jepsen.LoadResult(dir)
	if err != nil || res.Checker("session") == nil {
		t.Fatalf("results.json: %v", err)
	}
}

// TestCasRegisterDefaultsToLinearizable: --workload cas-register runs at
// linearizable unless --consistency says otherwise.
func TestCasRegisterDefaultsToLinearizable(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "cas-register"}, "linearizable"},
		{[]string{"--workload", "cas-register", "--consistency", "quorum"}, "quorum"},
		{[]string{"--workload", "register"}, "quorum"},
	} {
		out, code := execute(t, append(tc.args, "--dry-run", "--nemesis", "partition:halves,clock", "--clock-max", "5s")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, out)
		}
		var plan jepsen.Plan
		if err := json.Unmarshal([]byte(out), &plan); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(plan.Config.Consistency, ","); got != tc.want {
			t.Errorf("%v: consistency %s, want %s", tc.args, got, tc.want)
		}
	}
}
