package node

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/replication/health"
	"github.com/adaptkv/adaptkv/tuner"
)

// The chart's y axis runs from 0 to max(2×goal, largest figure), so the
// goal line sits half way up unless a figure exceeds it; missing figures
// (NaN) leave gaps in their line only.
func TestStaleChartScale(t *testing.T) {
	nan := math.NaN()
	bottom, span := float64(chartH-chartPad), float64(chartH-2*chartPad)
	for _, tc := range []struct {
		name      string
		pts       []chartPoint
		goal      float64
		top       string
		goalY     float64
		pred, obs int
	}{
		{"below goal", []chartPoint{{0.0002, nan}, {0.0004, 0.0001}}, 0.001, "0.2%", bottom - span/2, 2, 1},
		{"observed above", []chartPoint{{0.0005, 0.004}}, 0.001, "0.4%", bottom - span/4, 1, 1},
		{"zero goal, no data", []chartPoint{{nan, nan}}, 0, "0.1%", bottom, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newStaleChart(tc.pts, tc.goal)
			if c.Top != tc.top || c.GoalY != tc.goalY {
				t.Errorf("top %s, goal at y=%v; want %s, %v", c.Top, c.GoalY, tc.top, tc.goalY)
			}
			if len(c.PredictedDots) != tc.pred || len(c.ObservedDots) != tc.obs {
				t.Errorf("%d predicted, %d observed dots; want %d, %d", len(c.PredictedDots), len(c.ObservedDots), tc.pred, tc.obs)
			}
			for _, d := range append(c.PredictedDots, c.ObservedDots...) {
				if d.X < 0 || d.X > chartW || d.Y < 0 || d.Y > chartH {
					t.Errorf("dot %+v outside the %dx%d chart", d, chartW, chartH)
				}
			}
		})
	}
}

// Everything the page shows is escaped: a zone, an explanation or a
// flagged node's evidence cannot inject markup.
func TestStatusPageEscapes(t *testing.T) {
	evil := `<script>alert(1)</script>`
	p := statusPage{
		Now: time.Now(), RefreshSeconds: 5, NodeID: "n1",
		Members: []pageMember{{ID: "n1", Zone: evil, State: "alive", StateClass: "st-alive", Color: memberPalette[0],
			LinkToPage: "javascript:alert(1)"}},
		Keyspaces: []pageKeyspace{{Name: "ks", Adaptive: true, Goal: evil,
			Decisions: []pageDecision{{Explanation: evil, To: evil, Reason: "hold"}}}},
		Flagged: []FlaggedNode{{ID: "n1", Evidence: evil}},
	}
	var b strings.Builder
	if err := statusPageTmpl.Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, evil) || strings.Contains(page, `href="javascript:`) {
		t.Errorf("unescaped input in the page:\n%s", page)
	}
	if n := strings.Count(page, "&lt;script&gt;"); n < 5 {
		t.Errorf("%d escaped copies of the input; want 5 (zone, goal, decision, explanation, evidence)", n)
	}
	if !strings.Contains(page, `class="flagged-node"`) || strings.Contains(page, `id="none-flagged"`) {
		t.Errorf("a flagged node is not listed as such")
	}
}

// An adaptive keyspace's decisions show, newest first, the calibrated
// prediction of the policy chosen beside the stale rate measured under it
// (attached when the next decision is recorded), and the chart has a point
// for each figure present.
func TestStatusPageDecisions(t *testing.T) {
	n := &Node{meta: newFSM()}
	goal := tuner.DefaultGoal()
	def := KeyspaceDef{Name: "adapt", ReplicationFactor: 3, Level: "custom", R: 1, W: 1, Adaptive: &goal}
	at := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	pol := tuner.Policy{N: 3, R: 1, W: 1, Read: tuner.ReadNearest}
	for i, tc := range []struct {
		stale    float64
		observed *tuner.Observed
	}{
		{0.0004, nil},
		{0.0006, &tuner.Observed{Probed: 200, Stale: 1, StaleRate: 0.005}},
		{0.0002, &tuner.Observed{}}, // no probes: nothing measured
	} {
		d := tuner.Decision{Keyspace: "adapt", At: at.Add(time.Duration(i) * time.Second), From: pol, To: pol, Reason: tuner.ReasonHold,
			Explanation: fmt.Sprintf("decision %d", i), Chosen: &tuner.CandidateReport{Prediction: tuner.Prediction{Policy: pol, StaleProb: tc.stale}}}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var prev []byte
		if tc.observed != nil {
			if prev, err = json.Marshal(tc.observed); err != nil {
				t.Fatal(err)
			}
		}
		n.meta.recordDecision("adapt", b, prev)
	}
	k := n.pageKeyspace(def)
	var got []string
	for _, d := range k.Decisions {
		got = append(got, fmt.Sprintf("%s predicted=%s observed=%s/%d", d.Explanation, d.Predicted, d.Observed, d.Probed))
	}
	want := []string{
		"decision 2 predicted=0.02% observed=/0",
		"decision 1 predicted=0.06% observed=/0",
		"decision 0 predicted=0.04% observed=0.5%/200",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("decisions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if k.R != 1 || k.W != 1 || !k.Adaptive || !strings.Contains(k.Goal, "stale ≤ 0.1%, floor one, N 3..3, W ≥ 2") {
		t.Errorf("keyspace %+v", k)
	}
	if k.Chart == nil || len(k.Chart.PredictedDots) != 3 || len(k.Chart.ObservedDots) != 1 {
		t.Fatalf("chart %+v; want 3 predicted points and 1 observed", k.Chart)
	}
	// The observed 0.5% is the chart's top; the first point sits on it.
	if d := k.Chart.ObservedDots[0]; d.X != chartPad || d.Y != chartPad {
		t.Errorf("observed point at %+v; want the top left (%d, %d)", d, chartPad, chartPad)
	}
}

func TestLinkable(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true}, {"node-3.adaptkv:8080", true}, {"[::1]:8080", true},
		{":8080", false}, {"0.0.0.0:8080", false}, {"[::]:8080", false}, {"", false},
	} {
		if got := linkable(tc.addr); got != tc.want {
			t.Errorf("linkable(%q) = %v; want %v", tc.addr, got, tc.want)
		}
	}
}

func TestTimeLeft(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Hour, "expired"}, {0, "expired"}, {90 * time.Minute, "1h30m0s"}, {365*24*time.Hour + time.Hour, "365 days"},
	} {
		if got := timeLeft(tc.d); got != tc.want {
			t.Errorf("timeLeft(%v) = %q; want %q", tc.d, got, tc.want)
		}
	}
}

// The page's flagged nodes are the metadata log's, sorted, with the
// flagging decision's time and reason.
func TestFlaggedNodesFromHealthState(t *testing.T) {
	at := time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)
	st := &healthState{Flagged: map[string]health.Decision{
		"n3": {At: at, Node: "n3", Flag: true, Reason: "n3 answers 12x slower than its peers"},
		"n1": {At: at.Add(time.Second), Node: "n1", Flag: true, Reason: "n1 fails 40% of calls"},
	}}
	got := flaggedNodes(st)
	want := []FlaggedNode{
		{ID: "n1", Since: at.Add(time.Second), Evidence: "n1 fails 40% of calls"},
		{ID: "n3", Since: at, Evidence: "n3 answers 12x slower than its peers"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("flaggedNodes = %+v; want %+v", got, want)
	}
	if got := flaggedNodes(&healthState{}); len(got) != 0 {
		t.Fatalf("no flags: %+v", got)
	}
}
