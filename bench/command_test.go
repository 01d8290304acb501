package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCommand runs `bench args...` and returns its stdout and stderr.
func runCommand(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := NewCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// One short end-to-end run: a local 3-node cluster on the in-memory engine,
// workload A at quorum for about two seconds.
func TestCommandLocalClusterJSON(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "a.png")
	out, errOut, err := runCommand(t, "--local", "3", "--in-memory", "--workload", "a", "--records", "2000",
		"--concurrency", "8", "--duration", "2s", "--consistency", "quorum", "--json", "--plot", plot)
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut)
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out)
	}
	if rep.Schema != ReportSchema || rep.Target.Local != 3 || len(rep.Target.Endpoints) != 3 {
		t.Errorf("report header %+v %+v; want schema %s and 3 local endpoints", rep.Schema, rep.Target, ReportSchema)
	}
	if rep.Load == nil || rep.Load.Ops != 2000 || rep.Load.Errors != 0 {
		t.Errorf("load = %+v; want 2000 records without errors", rep.Load)
	}
	if rep.Run == nil || rep.Run.Ops == 0 || rep.Run.Errors != 0 {
		t.Fatalf("run = %+v; want ops > 0 and no errors", rep.Run)
	}
	if rep.Run.Operations["read"] == nil || rep.Run.Operations["update"] == nil || rep.Run.Latency.P99 <= 0 {
		t.Errorf("run operations %v, latency %+v; want reads and updates with latencies", rep.Run.Operations, rep.Run.Latency)
	}
	if rep.Settings.RF != 3 || rep.Settings.Consistency != "quorum" {
		t.Errorf("settings %+v; want rf 3 at quorum", rep.Settings)
	}
	if !strings.Contains(errOut, "ops/s") {
		t.Errorf("no live status line on stderr:\n%s", errOut)
	}
	if b, err := os.ReadFile(plot); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("--plot did not write a PNG: %v", err)
	}
}

func TestCommandFlagErrors(t *testing.T) {
	t.Setenv(EndpointsEnv, "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "z"}, "unknown workload"},
		{[]string{"--distribution", "pareto", "--local", "1"}, "unknown distribution"},
		{[]string{"--consistency", "some"}, "unknown consistency"},
		{[]string{"--concurrency", "0"}, "concurrency"},
		{nil, "no cluster to benchmark"},
	} {
		_, _, err := runCommand(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bench %v: err = %v; want one mentioning %q", tt.args, err, tt.want)
		}
	}
}

// --rate runs an open loop: every scheduled operation is offered, and the
// JSON report is the open loop's.
func TestCommandOpenLoop(t *testing.T) {
	out, errOut, err := runCommand(t, "--local", "1", "--in-memory", "--records", "200", "--rate", "100",
		"--duration", "1s", "--json", "--quiet")
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, errOut)
	}
	var res OpenResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not an open-loop result: %v\n%s", err, out)
	}
	if len(res.Steps) != 1 || res.Steps[0].Offered != 100 || res.Steps[0].Ops+res.Steps[0].Errors != 100 {
		t.Errorf("steps %+v; want 100 operations offered and answered", res.Steps)
	}
}
