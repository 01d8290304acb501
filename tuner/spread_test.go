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
