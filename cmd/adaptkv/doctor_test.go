package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// TestDoctorAndStatusShowFlags: doctor names a flagged node with its
// reason, the last window's evidence and the decisions; status marks it
// FLAGGED in the table and says why below it.
func TestDoctorAndStatusShowFlags(t *testing.T) {
	at := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	ev := client.HealthEvidence{Node: "n3", Samples: 420, Latency: 51 * time.Millisecond, ClusterLatency: 300 * time.Microsecond,
		LatencyLimit: 5300 * time.Microsecond, FailureLimit: 0.05, Verdict: "bad", Streak: 3}
	dec := client.HealthDecision{At: at, Node: "n3", Flag: true, Reason: "n3 answered its peers in 51ms against the cluster's 300µs", Evidence: ev}
	var out bytes.Buffer
	a := newApp(nil, &out, &out)
	a.printDoctor(doctorJSON{AnsweredBy: "n1", Leader: true, Enabled: true, Flagged: map[string]client.HealthDecision{"n3": dec},
		Evidence: []client.HealthEvidence{ev}, Decisions: []client.HealthDecision{dec}})
	for _, want := range []string{"FLAGGED n3 since 2026-12-05 03:00:00: n3 answered its peers in 51ms", "bad 3", "420", "51ms", "5.3ms", "flagged n3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := a.printStatus(statusJSON{AnsweredBy: "n1", MetadataLeader: "n1", Members: []memberJSON{
		{ID: "n1", State: "alive"}, {ID: "n3", State: "alive", Flagged: true, FlagReason: dec.Reason}}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alive FLAGGED", "FLAGGED n3: n3 answered its peers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
}
