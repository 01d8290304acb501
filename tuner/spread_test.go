package tuner

import (
	"math"
	"testing"
)

// With latencies recorded by rank (a local replica at ~0, two remote ones at
// 20 ms) and reads coordinated by another replica than the write two times
// in three, R=1 W=1 reads issued at once after the write are stale about
// 2/3 of the time; a single coordinator would never see them stale.
// Overlapping quorums stay exactly fresh either way.
func TestCoordinatorSpread(t *testing.T) {
	spec := synthSpec{
		replicas: []replicaSpec{
			{id: "nearest", read: lat(0.05, 0), write: lat(0.05, 0)},
			{id: "2nd", read: lat(40, 0), write: lat(40, 0)},
			{id: "3rd", read: lat(40, 0), write: lat(40, 0)},
		},
		reads: 10_000, writes: 10_000, gap: lat(0.5, 0), atRisk: 1, samples: 2000, clusterSize: 3,
	}
	obs := synth(nil, spec)
	cands := []Policy{{N: 3, R: 1, W: 1, Read: ReadNearest}, {N: 3, R: 1, W: 3, Read: ReadNearest}, {N: 3, R: 2, W: 2, Read: ReadNearest}}
	for _, tt := range []struct {
		spread bool
		want   []float64
	}{
		{false, []float64{0, 0, 0}},
		{true, []float64{2.0 / 3, 0, 0}},
	} {
		m := DefaultModel()
		m.Trials = 20_000
		m.CoordinatorSpread = tt.spread
		preds, err := m.Predict(obs, cands, Calibration{})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range preds {
			tol := 0.02
			if tt.want[i] == 0 {
				tol = 0
			}
			if math.Abs(p.RawStaleProb-tt.want[i]) > tol {
				t.Errorf("spread=%v %v: stale %.4f; want %.4f", tt.spread, p.Policy, p.RawStaleProb, tt.want[i])
			}
		}
		if r := preds[1]; r.ReadP99 > 1_000_000 { // 1 ms: R=1 reads the local replica
			t.Errorf("spread=%v: R=1 W=3 read p99 %v; want the local replica's", tt.spread, r.ReadP99)
		}
	}
}

// TestExperimentStaleWindow reproduces the geometry of the tuner experiment
// (bench/scenario): the coordinator's own replica at 0.1 ms, two
// others 20 ms away with the whole delay on the request path, reads spread
// over the replicas. At R=1 W=1 a read coordinated by another replica than
// the write is stale iff it comes within about 20 ms of the commit, so two
// reads in three that come 5 or 15 ms after the commit are stale; arm one
// measured 66.7% stale reads in the write-heavy phase (reads 0–10 ms after
// the write) and stale ages of 0–20 ms in the read-heavy ones.
//
// It shows the two suspected causes of the model's under-prediction:
//   - The recorded gap (the age of the version a read returned, from the
//     start of a 22 ms W=3 write to the end of the read) put every read
//     5 ms after a write at about 27 ms, outside the window whatever the
//     split: predicted 0 where 2/3 is right. This one dominated: with the
//     gap taken from the commit, the experiment's what-if predictions for
//     R=1 W=1 came within 1.65× of arm one in every phase.
//   - The half-and-half split of round trips halves the window to 10.5 ms
//     here: right at 5 ms, 0 instead of 2/3 at 15 ms. Measured, it mattered
//     less than the gap, and the whole-round-trip split over-predicted
//     elsewhere (see Model.WriteLegShare), so half stays the default.
func TestExperimentStaleWindow(t *testing.T) {
	one := []Policy{{N: 3, R: 1, W: 1, Read: ReadNearest}}
	tests := []struct {
		name  string
		gap   float64 // ms, as recorded
		share float64 // Model.WriteLegShare
		want  float64
	}{
		{"gap 5 ms, write leg a whole round trip", 5, 1, 2.0 / 3},
		{"gap 5 ms, half round trip", 5, 0.5, 2.0 / 3},
		{"gap 15 ms, write leg a whole round trip", 15, 1, 2.0 / 3},
		{"gap 15 ms, half round trip", 15, 0.5, 0},
		{"gap 5 ms recorded as the version's age at W=3", 5 + 22 + 0.4, 1, 0},
		{"gap 25 ms, past the window", 25, 1, 0},
	}
	for _, tt := range tests {
		obs := synth(nil, synthSpec{
			replicas: []replicaSpec{
				{id: "nearest", read: lat(0.1, 0), write: lat(0.1, 0)},
				{id: "2nd-nearest", read: lat(21, 0), write: lat(21, 0)},
				{id: "3rd-nearest", read: lat(21, 0), write: lat(21, 0)},
			},
			reads: 10_000, writes: 10_000, gap: lat(tt.gap, 0), atRisk: 1, samples: 2000, clusterSize: 3,
		})
		m := DefaultModel()
		m.Trials = 20_000
		m.CoordinatorSpread = true
		m.WriteLegShare = tt.share
		preds, err := m.Predict(obs, one, Calibration{})
		if err != nil {
			t.Fatal(err)
		}
		tol := 0.02
		if tt.want == 0 {
			tol = 0
		}
		if got := preds[0].RawStaleProb; math.Abs(got-tt.want) > tol {
			t.Errorf("%s: stale %.4f; want %.4f", tt.name, got, tt.want)
		}
	}
}
