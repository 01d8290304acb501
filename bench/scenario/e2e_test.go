package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/internal/testbin"
)

// adaptkv is the adaptkv executable TestMain builds, unless -short.
var adaptkv testbin.Lazy

func TestMain(m *testing.M) { testbin.MainUnlessShort(m, &adaptkv) }

func needBinary(t *testing.T) { t.Helper(); adaptkv.Need(t, "starts a 5-node cluster") }

// TestRunEndToEnd runs a short experiment on a real cluster. It checks
// that the run produces its results for every arm and phase, not that the
// targets are met: four seconds per arm is far too short for the tuner.
func TestRunEndToEnd(t *testing.T) {
	needBinary(t)
	out := t.TempDir()
	var progress strings.Builder
	cfg := Config{
		Binary: adaptkv.Path, Out: out, Seed: 3,
		PhaseDuration: 4 * time.Second, Slice: time.Second, Warmup: 3 * time.Second,
		Keys: 100, Concurrency: 8, Rate: 200,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Phases) != len(Phases) {
		t.Fatalf("results.json has %d phases, want %d", len(back.Phases), len(Phases))
	}
	for _, p := range back.Phases {
		if len(p.Arms) != 3 {
			t.Fatalf("phase %s has %d arms, want 3", p.Name, len(p.Arms))
		}
		for _, a := range p.Arms {
			if a.Whole.Ops == 0 || a.Whole.Reads == 0 {
				t.Errorf("phase %s arm %s: no operations measured: %+v", p.Name, a.Arm, a.Whole)
			}
		}
	}
	for _, name := range []string{"results.md", "plot.png"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", name, err)
		}
	}
	if len(res.Verdicts) != 2*len(Phases) {
		t.Errorf("%d verdicts, want %d", len(res.Verdicts), 2*len(Phases))
	}
	// Every node was stopped.
	for _, n := range res.Nodes {
		if err := processAlive(n.PID); err == nil {
			t.Errorf("node %s (pid %d) still running after Run returned", n.ID, n.PID)
		}
	}
}

// TestFullExperiment runs the full experiment when SCENARIO_OUT names an
// output folder; SCENARIO_ARGS adds command-line flags (e.g. "--phase 60s").
// It is how the experiment is run from a checkout before `adaptkv bench
// --scenario adaptive` is wired up:
//
//	SCENARIO_OUT=/tmp/adaptive SCENARIO_ARGS="--phase 60s" \
//	  go test -run TestFullExperiment -timeout 40m -v ./bench/scenario/
func TestFullExperiment(t *testing.T) {
	out := os.Getenv("SCENARIO_OUT")
	if out == "" {
		t.Skip("set SCENARIO_OUT to run the full experiment")
	}
	needBinary(t)
	// Record how the experiment was really run (NewCommand records the
	// process's arguments, which here are the test binary's).
	saved := os.Args
	os.Args = []string{fmt.Sprintf("SCENARIO_OUT=%s SCENARIO_ARGS=%q go test -run TestFullExperiment -timeout 40m ./bench/scenario/",
		out, os.Getenv("SCENARIO_ARGS"))}
	defer func() { os.Args = saved }()
	cmd := NewCommand()
	args := append([]string{"--out", out, "--binary", adaptkv.Path}, strings.Fields(os.Getenv("SCENARIO_ARGS"))...)
	cmd.SetArgs(args)
	cmd.SetOut(os.Stdout)
	cmd.SetErr(os.Stderr)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
}
