package tuner

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata with the actual output; review the diff")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -run %s -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// TestGoldenDecisions renders decisions for a person on call; the text is
// the contract of `adaptkv tuner explain`. A read-heavy keyspace with a slow
// replica moves to R=1 on the fast replica (and records what was observed
// after); the same move is held back within the dwell time, and for too
// small a gain; probes that measure staleness step it back at once; reads
// that follow writes closely force it back to a quorum.
func TestGoldenDecisions(t *testing.T) {
	m := decideModel()
	g := DefaultGoal()
	var out strings.Builder
	spec := readHeavySpec()
	spec.start = t0
	quorum := Policy{N: 3, R: 2, W: 2}
	nearest := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}

	spec.policy = quorum
	obs := synth(nil, spec)
	_, d := Decide(m, NewState(quorum), window(obs), g, obs.End)
	// What the next interval measured: reads served by n1 alone.
	after := obs.Clone()
	after.Policy = d.To
	after.Probed = 2000
	after.ReadLatency = Hist{}
	fill(&after.ReadLatency, spec.replicas[0].read, nil, 2000)
	after.WriteLatency = Hist{}
	fill(&after.WriteLatency, spec.replicas[1].write, nil, 2000)
	d.Observe(after)
	out.WriteString(FormatDecision(d, 6) + "\n")

	// Dwell: the last change was a minute ago.
	_, d = Decide(m, State{Policy: quorum, LastChange: obs.End.Add(-time.Minute)}, window(obs), g, obs.End)
	out.WriteString(d.Explanation + "\n\n")

	// Minimum gain: hedged reads cost about as much as nearest ones.
	_, d = Decide(m, NewState(Policy{N: 3, R: 1, W: 2, Read: ReadHedged}), window(obs), g, obs.End)
	out.WriteString(d.Explanation + "\n\n")

	// Probes find 1.5% of reads stale: step back at once.
	spec.policy = nearest
	spec.probed, spec.stale = 2000, 30
	obs = synth(nil, spec)
	_, d = Decide(m, State{Policy: nearest, LastChange: obs.End.Add(-time.Minute)}, window(obs), g, obs.End)
	out.WriteString(FormatDecision(d, 4) + "\n")

	// Reads now follow writes within a fraction of a millisecond.
	obs = synth(nil, synthSpec{start: t0, replicas: jittery(), reads: 60_000, writes: 40_000, gap: lat(0, 0.2), atRisk: 0.6, samples: 2000, policy: nearest})
	_, d = Decide(m, State{Policy: nearest, LastChange: obs.End.Add(-time.Minute)}, window(obs), g, obs.End)
	out.WriteString(d.Explanation + "\n")

	golden(t, "decisions.golden", out.String())
}
