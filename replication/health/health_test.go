package health

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestDetector runs the scripts in testdata: each `window` command feeds
// one or more identical windows in which every member coordinates requests
// to every other with the latency and failures its line gives, and prints
// the decisions, the verdicts that are not "good" and the flagged set.
//
//	window [repeat=N] [params=flag-after:K,clear-after:M,min-samples:S]
//	n1 1ms [sent=100] [fail=0] [write=5ms] [wsent=100]
//
// A latency of "-" sends the node no reads; write= adds writes with that
// round trip.
// `reset` starts a fresh detector.
func TestDetector(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		d := New(DefaultParams())
		now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
		n := 0
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "reset":
				d, n = New(DefaultParams()), 0
				return "ok"
			case "params":
				p := DefaultParams()
				for _, a := range td.CmdArgs {
					v, err := strconv.Atoi(a.Vals[0])
					if err != nil {
						td.Fatalf(t, "%s: %v", a.Key, err)
					}
					switch a.Key {
					case "flag-after":
						p.FlagAfter = v
					case "clear-after":
						p.ClearAfter = v
					case "min-samples":
						p.MinSamples = uint64(v)
					default:
						td.Fatalf(t, "unknown param %s", a.Key)
					}
				}
				d, n = New(p), 0
				return "ok"
			case "window":
				repeat := 1
				if td.HasArg("repeat") {
					td.ScanArgs(t, "repeat", &repeat)
				}
				w := parseWindow(t, td.Input)
				var b strings.Builder
				for range repeat {
					n++
					now = now.Add(10 * time.Second)
					w.End = now
					decs, ev := d.Step(w)
					checkInvariants(t, d, w, decs)
					for _, e := range ev {
						if e.Verdict != "good" {
							fmt.Fprintf(&b, "w%d %s %s streak=%d\n", n, e.Node, e.Verdict, e.Streak)
						}
					}
					for _, dec := range decs {
						verb := "reinstate"
						if dec.Flag {
							verb = "flag"
						}
						fmt.Fprintf(&b, "w%d %s %s: %s\n", n, verb, dec.Node, dec.Reason)
					}
				}
				fmt.Fprintf(&b, "flagged: %v", d.Flagged())
				return b.String()
			}
			td.Fatalf(t, "unknown command %s", td.Cmd)
			return ""
		})
	})
}

// parseWindow reads `node latency [sent=N] [fail=F]` lines.
func parseWindow(t *testing.T, input string) Window {
	t.Helper()
	type line struct {
		id                string
		lat, wlat         time.Duration
		sent, fail, wsent uint64
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(input), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("bad line %q", l)
		}
		ln := line{id: f[0], sent: 100, wsent: 100}
		if f[1] == "-" {
			ln.sent = 0
		} else {
			lat, err := time.ParseDuration(f[1])
			if err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			ln.lat = lat
		}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			if k == "write" {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				ln.wlat = d
				continue
			}
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			switch k {
			case "sent":
				ln.sent = x
			case "wsent":
				ln.wsent = x
			case "fail":
				ln.fail = x
			default:
				t.Fatalf("line %q: unknown %s", l, k)
			}
		}
		lines = append(lines, ln)
	}
	var w Window
	for _, r := range lines {
		w.Members = append(w.Members, r.id)
	}
	peers := uint64(len(lines) - 1)
	for _, r := range lines {
		for _, c := range lines {
			if c.id == r.id {
				continue
			}
			if r.sent > 0 {
				w.Samples = append(w.Samples, Sample{Coordinator: c.id, Replica: r.id, Sent: r.sent / peers, Failed: r.fail / peers, Latency: r.lat})
			}
			if r.wlat > 0 {
				w.Samples = append(w.Samples, Sample{Coordinator: c.id, Replica: r.id, Sent: r.wsent / peers, Latency: r.wlat, Write: true})
			}
		}
	}
	return w
}

// checkInvariants is run on every window of every script and test: never
// more than a minority flagged, and decisions agree with the flagged set.
func checkInvariants(t *testing.T, d *Detector, w Window, decs []Decision) {
	t.Helper()
	if f := d.Flagged(); len(f) > (len(w.Members)-1)/2 {
		t.Fatalf("%d of %d members flagged: %v", len(f), len(w.Members), f)
	}
	for _, dec := range decs {
		flagged := false
		for _, id := range d.Flagged() {
			flagged = flagged || id == dec.Node
		}
		if flagged != dec.Flag {
			t.Fatalf("decision %+v disagrees with the flagged set %v", dec, d.Flagged())
		}
	}
}

// TestHealthyNoiseNeverFlags is the property that a healthy cluster is
// left alone: random clusters of 3 to 9 nodes whose latencies are drawn
// around a common base with noise (up to ±50%, a few rare spikes of one
// window) and a rare failure never get a node flagged in 600 windows (100
// minutes at 10 s).
func TestHealthyNoiseNeverFlags(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 3 + rng.IntN(7)
		base := time.Duration(200+rng.IntN(5000)) * time.Microsecond
		d := New(DefaultParams())
		now := time.Unix(0, 0)
		for i := range 600 {
			var w Window
			for j := range n {
				w.Members = append(w.Members, fmt.Sprintf("n%d", j+1))
			}
			for _, r := range w.Members {
				lat := time.Duration(float64(base) * (0.5 + rng.Float64()))
				if rng.IntN(200) == 0 { // a GC pause or a compaction: one window
					lat *= 20
				}
				for _, c := range w.Members {
					if c == r {
						continue
					}
					s := Sample{Coordinator: c, Replica: r, Sent: uint64(10 + rng.IntN(200)), Latency: lat}
					if rng.IntN(50) == 0 {
						s.Failed = 1
					}
					// Writes wait for an fsync: slower than reads, and noisier.
					ws := Sample{Coordinator: c, Replica: r, Sent: uint64(5 + rng.IntN(50)), Latency: 10*base/3 + time.Duration(rng.Float64()*float64(2*base)), Write: true}
					w.Samples = append(w.Samples, s, ws)
				}
			}
			now = now.Add(10 * time.Second)
			w.End = now
			decs, _ := d.Step(w)
			checkInvariants(t, d, w, decs)
			if len(decs) > 0 {
				t.Fatalf("seed %d window %d (n=%d base=%v): healthy cluster got %+v", seed, i, n, base, decs[0])
			}
		}
	}
}

// TestFlagWithinK: a node several times slower than its peers is flagged
// at exactly the FlagAfter-th window, for every FlagAfter and cluster size.
func TestFlagWithinK(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes int
		k     int
		slow  time.Duration
	}{
		{"3 nodes, k=1", 3, 1, 50 * time.Millisecond},
		{"3 nodes, k=3", 3, 3, 50 * time.Millisecond},
		{"5 nodes, k=3", 5, 3, 50 * time.Millisecond},
		{"9 nodes, k=5", 9, 5, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultParams()
			p.FlagAfter = tc.k
			d := New(p)
			for i := 1; i <= tc.k+2; i++ {
				w := uniform(tc.nodes, time.Millisecond, 50)
				for j := range w.Samples {
					if w.Samples[j].Replica == "n1" {
						w.Samples[j].Latency = tc.slow
					}
				}
				decs, _ := d.Step(w)
				flagged := len(d.Flagged()) == 1 && d.Flagged()[0] == "n1"
				if flagged != (i >= tc.k) {
					t.Fatalf("window %d: flagged %v, want after %d windows (decisions %+v)", i, d.Flagged(), tc.k, decs)
				}
			}
		})
	}
}

// TestTooFewSamplesNeverFlags: a node slow on a handful of requests, or a
// cluster with too few judged peers, is never flagged.
func TestTooFewSamplesNeverFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes int
		sent  uint64
	}{
		{"5 nodes, 4 requests each", 5, 4},
		{"2 nodes", 2, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(DefaultParams())
			for range 10 {
				w := uniform(tc.nodes, time.Millisecond, tc.sent)
				for j := range w.Samples {
					if w.Samples[j].Replica == "n1" {
						w.Samples[j].Latency = time.Second
					}
				}
				if decs, _ := d.Step(w); len(decs) > 0 {
					t.Fatalf("flagged on too little evidence: %+v", decs)
				}
			}
		})
	}
}

// uniform is a window in which every node coordinates sent requests (split
// over its peers) to every other, all answered in lat.
func uniform(nodes int, lat time.Duration, sent uint64) Window {
	var w Window
	for i := range nodes {
		w.Members = append(w.Members, fmt.Sprintf("n%d", i+1))
	}
	for _, r := range w.Members {
		for _, c := range w.Members {
			if c != r {
				w.Samples = append(w.Samples, Sample{Coordinator: c, Replica: r, Sent: sent / uint64(nodes-1), Latency: lat})
			}
		}
	}
	return w
}

// TestMinorityBound: flags a log already holds count against the bound, so
// a new leader that restores them flags no one past a minority.
func TestMinorityBound(t *testing.T) {
	d := New(DefaultParams())
	d.Restore([]string{"n4", "n5"})
	for range 5 {
		w := uniform(5, time.Millisecond, 100)
		for j := range w.Samples {
			switch w.Samples[j].Replica {
			case "n4", "n5":
				w.Samples[j].Failed = w.Samples[j].Sent / 2
			}
		}
		// n1 is slow too: a third candidate beside the flagged two.
		for j := range w.Samples {
			if w.Samples[j].Replica == "n1" {
				w.Samples[j].Latency = 100 * time.Millisecond
			}
		}
		decs, _ := d.Step(w)
		checkInvariants(t, d, w, decs)
		for _, dec := range decs {
			if dec.Flag {
				t.Fatalf("flagged %s beyond the minority: %v", dec.Node, d.Flagged())
			}
		}
	}
}
