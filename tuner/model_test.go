package tuner

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// constS is a sampler that always returns the same value (ns).
type constS float64

func (c constS) sample(*rand.Rand) float64 { return float64(c) }

// expS samples an exponential distribution with the given mean (ns).
type expS float64

func (e expS) sample(r *rand.Rand) float64 { return r.ExpFloat64() * float64(e) }

// iid returns a scenario of n identical replicas with the given legs.
func iid(n int, w, a, r, s, gap sampler) *scenario {
	sc := &scenario{gap: gap, atRisk: 1}
	for i := 0; i < n; i++ {
		sc.nodes = append(sc.nodes, legs{w: w, a: a, r: r, s: s})
		sc.ids = append(sc.ids, string(rune('a'+i)))
	}
	sc.pool = sc.nodes[0]
	return sc
}

func testModel(trials int) Model {
	m := DefaultModel()
	m.Trials = trials
	m.Timeout = time.Hour // no reply is ever cut off unless a test says so
	return m
}

// stale3 is the closed form derived in the comment of TestStaleClosedFormN3R1W1.
const stale3 = (10.0 / 27.0) * (193.0 / 288.0)

// TestStaleClosedFormN3R1W1 checks the Monte Carlo against a closed form
// for N=3, R=W=1, every WARS leg exponential with rate λ, reads sent to all
// replicas (the first reply wins), and the read issued t after the commit.
//
// Derivation. Let X_i = W_i + A_i (Erlang-2) and C = min X_i the commit.
// The first reply comes from j = argmin (R_i + S_i), independent of the write
// side and uniform, so by symmetry take j = 1. The read is stale iff
// W_1 > C + t + R_1. Since W_1 < W_1 + A_1, replica 1 cannot be the one that
// committed when this holds, so the event is W_1 > t + R_1 + M with
// M = min(X_2, X_3), independent of W_1. By memorylessness
//
//	P(W_1 − M > s) = e^{−λs}·E[e^{−λM}],  s ≥ 0,
//
// and with P(M > x) = e^{−2λx}(1+λx)², E[e^{−λM}] = 1 − λ∫e^{−λx}P(M>x)dx
// = 1 − ∫e^{−3u}(1+u)²du = 1 − 17/27 = 10/27. R_1 given that replica 1
// replied first has E[e^{−λR_1} | first] = 3·∫∫e^{−4u−3v}(1+u+v)²du dv =
// 3·193/864 = 193/288 (the same integral with e^{−3u−3v} gives 1/3, as it
// must). Hence
//
//	P(stale | t) = (10/27)·(193/288)·e^{−λt} = 1930/7776·e^{−λt} ≈ 0.2482·e^{−λt},
//
// and for a gap t ~ Exp with mean g, E[e^{−λt}] = 1/(1+λg).
//
// Reference: Bailis et al., "Probabilistically Bounded Staleness for
// Practical Partial Quorums", VLDB 2012, §4 (the WARS model).
func TestStaleClosedFormN3R1W1(t *testing.T) {
	const mean = float64(10 * time.Millisecond) // 1/λ
	const trials = 100_000
	tests := []struct {
		name string
		gap  sampler
		want float64
	}{
		{"t=0", constS(0), stale3},
		{"t=1/λ", constS(mean), stale3 * math.Exp(-1)},
		{"t=3/λ", constS(3 * mean), stale3 * math.Exp(-3)},
		{"t~Exp(mean 1/λ)", expS(mean), stale3 / 2},
	}
	m := testModel(trials)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expS(mean)
			sc := iid(3, e, e, e, e, tt.gap)
			got := m.predict(sc, []Policy{{N: 3, R: 1, W: 1}}, Calibration{})[0].RawStaleProb
			se := math.Sqrt(tt.want * (1 - tt.want) / trials)
			t.Logf("P(stale) = %.5f; closed form %.5f; |diff| = %.2f standard errors", got, tt.want, math.Abs(got-tt.want)/se)
			if math.Abs(got-tt.want) > 4*se {
				t.Errorf("P(stale) = %.5f; want %.5f ± %.5f (4 SE)", got, tt.want, 4*se)
			}
		})
	}
}

// TestStaleClosedFormInstantReads checks a second closed form that isolates
// the write side: W legs exponential, A, R and S zero, one fixed replica
// read. The committing replica is the first to receive the write; any other
// has, by memorylessness, an Exp(λ) residual, so a read t after the commit
// is stale with probability (N−1)/N·e^{−λt} for W=1, and for W=w it is
// stale iff the read replica is not among the first w receivers and its
// residual after the w-th exceeds t: (N−w)/N·e^{−λt}.
func TestStaleClosedFormInstantReads(t *testing.T) {
	const mean = float64(5 * time.Millisecond)
	const trials = 60_000
	m := testModel(trials)
	for _, n := range []int{2, 3, 5} {
		for w := 1; w < n; w++ {
			for _, tm := range []float64{0, mean} {
				sc := iid(n, expS(mean), constS(0), constS(0), constS(0), constS(tm))
				got := m.predict(sc, []Policy{{N: n, R: 1, W: w, Read: ReadNearest}}, Calibration{})[0].RawStaleProb
				want := float64(n-w) / float64(n) * math.Exp(-tm/mean)
				se := math.Sqrt(want * (1 - want) / trials)
				if math.Abs(got-want) > 4*se {
					t.Errorf("N=%d W=%d t=%v: P(stale) = %.4f; want %.4f ± %.4f", n, w, time.Duration(tm), got, want, 4*se)
				}
			}
		}
	}
}

// TestOverlappingNeverStale: with R+W > N every read quorum contains a
// replica that acknowledged the write before the commit, so the predicted
// stale probability is exactly 0, for every read path, with timeouts, round
// trips split half and half, and replicas drawn from a larger cluster.
func TestOverlappingNeverStale(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	obs := synth(rng, synthSpec{
		replicas: []replicaSpec{
			{id: "n1", read: lat(1, 0.5), write: lat(1, 0.5), timeouts: 0.02},
			{id: "n2", read: lat(5, 3), write: lat(20, 10), oneWay: true},
			{id: "n3", read: lat(0.3, 0.1), write: lat(40, 30), timeouts: 0.1},
			{id: "n4", read: lat(2, 1), write: lat(2, 1), oneWay: true},
			{id: "n5", read: lat(1, 8), write: lat(1, 8)},
		},
		reads: 9000, writes: 1000, gap: lat(0, 0.5), atRisk: 1, samples: 500,
	})
	var cands []Policy
	for n := 1; n <= 7; n++ { // N=6, 7 exceed the observed nodes: pooled replicas
		for r := 1; r <= n; r++ {
			for w := n - r + 1; w <= n; w++ {
				for _, p := range []ReadPath{ReadAll, ReadNearest, ReadHedged} {
					cands = append(cands, Policy{N: n, R: r, W: w, Read: p})
				}
			}
		}
	}
	m := testModel(2000)
	preds, err := m.Predict(obs, cands, Calibration{LogFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range preds {
		if p.RawStaleProb != 0 || p.StaleProb != 0 {
			t.Errorf("%v: stale = %v (raw %v); want exactly 0", p.Policy, p.StaleProb, p.RawStaleProb)
		}
	}
}

// TestDeterministicStaleness: constant legs make staleness certain or
// impossible by construction.
func TestDeterministicStaleness(t *testing.T) {
	ms := float64(time.Millisecond)
	// Replica 0 receives writes after 1 ms, replicas 1 and 2 after 100 ms;
	// every ack takes 1 ms, so W=1 commits at 2 ms. Replica 1 is the
	// nearest for reads (0.5 ms each way), replica 0 next (5 ms), replica 2
	// last (6 ms).
	mk := func(gap float64) *scenario {
		return &scenario{atRisk: 1, gap: constS(gap), nodes: []legs{
			{w: constS(1 * ms), a: constS(ms), r: constS(5 * ms), s: constS(5 * ms), rank: 10 * ms},
			{w: constS(100 * ms), a: constS(ms), r: constS(0.5 * ms), s: constS(0.5 * ms), rank: 1 * ms},
			{w: constS(100 * ms), a: constS(ms), r: constS(6 * ms), s: constS(6 * ms), rank: 12 * ms},
		}}
	}
	// Equal constant legs everywhere: the commit comes after every replica
	// has the write, so no read is ever stale.
	equal := iid(3, constS(10*ms), constS(ms), constS(ms), constS(ms), constS(20*ms))
	tests := []struct {
		name string
		sc   *scenario
		p    Policy
		want float64
	}{
		{"equal legs, W=10ms, read 20ms later", equal, Policy{N: 3, R: 1, W: 1, Read: ReadAll}, 0},
		{"equal legs, nearest", equal, Policy{N: 3, R: 1, W: 1, Read: ReadNearest}, 0},
		{"nearest replica lacks the write", mk(0), Policy{N: 3, R: 1, W: 1, Read: ReadNearest}, 1},
		{"first reply lacks the write", mk(0), Policy{N: 3, R: 1, W: 1, Read: ReadAll}, 1},
		{"hedge never fires on constant legs", mk(0), Policy{N: 3, R: 1, W: 1, Read: ReadHedged}, 1},
		{"second reply has it", mk(0), Policy{N: 3, R: 2, W: 1, Read: ReadAll}, 0},
		{"two nearest include the writer", mk(0), Policy{N: 3, R: 2, W: 1, Read: ReadNearest}, 0},
		{"read 200ms later", mk(200 * ms), Policy{N: 3, R: 1, W: 1, Read: ReadNearest}, 0},
		{"read 98ms later: 2+98+0.5 ≥ 100", mk(98 * ms), Policy{N: 3, R: 1, W: 1, Read: ReadNearest}, 0},
		{"read 97ms later: 2+97+0.5 < 100", mk(97 * ms), Policy{N: 3, R: 1, W: 1, Read: ReadNearest}, 1},
		{"W=2 commits at 101ms", mk(0), Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, 0},
	}
	m := testModel(200)
	for _, tt := range tests {
		got := m.predict(tt.sc, []Policy{tt.p}, Calibration{})[0].RawStaleProb
		if got != tt.want {
			t.Errorf("%s: %v stale = %v; want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

// TestConstantLatencies: with constant legs every percentile is the
// constant: reads take R+S, writes W+A.
func TestConstantLatencies(t *testing.T) {
	ms := time.Millisecond
	sc := iid(3, constS(3*ms), constS(2*ms), constS(ms), constS(ms), constS(0))
	m := testModel(500)
	for _, p := range Candidates(Goal{MinRF: 3, MaxRF: 3, MaxStale: 1}, 0) {
		pr := m.predict(sc, []Policy{p}, Calibration{})[0]
		for _, c := range []struct {
			what      string
			got, want time.Duration
		}{
			{"read p50", pr.ReadP50, 2 * ms}, {"read p99", pr.ReadP99, 2 * ms}, {"read mean", pr.ReadMean, 2 * ms},
			{"write p50", pr.WriteP50, 5 * ms}, {"write p99", pr.WriteP99, 5 * ms}, {"write mean", pr.WriteMean, 5 * ms},
		} {
			if c.got != c.want {
				t.Errorf("%v: %s = %v; want %v", p, c.what, c.got, c.want)
			}
		}
	}
	// The same through histograms: a histogram of one value samples it
	// exactly.
	var h2, h1 Hist
	h2.RecordN(2*ms, 100)
	h1.RecordN(ms, 100)
	obs := Observation{Reads: 1, Writes: 1, Replicas: []ReplicaObservation{
		{ID: "a", WriteRTT: h2, ReadRTT: h1}, {ID: "b", WriteRTT: h2, ReadRTT: h1}, {ID: "c", WriteRTT: h2, ReadRTT: h1},
	}}
	preds, err := m.Predict(obs, []Policy{{N: 3, R: 2, W: 2}, {N: 3, R: 1, W: 3, Read: ReadHedged}}, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range preds {
		if pr.ReadP50 != ms || pr.ReadP99 != ms || pr.WriteP50 != 2*ms || pr.WriteP99 != 2*ms {
			t.Errorf("%v via histograms: read %v/%v write %v/%v; want 1ms/1ms 2ms/2ms", pr.Policy, pr.ReadP50, pr.ReadP99, pr.WriteP50, pr.WriteP99)
		}
	}
}

// orderStatMean is E[X_(k:n)] for n iid exponentials of the given mean:
// mean·Σ_{i=0}^{k−1} 1/(n−i) (Rényi's representation).
func orderStatMean(k, n int, mean float64) float64 {
	var s float64
	for i := 0; i < k; i++ {
		s += 1 / float64(n-i)
	}
	return mean * s
}

// orderStatQuantile solves P(X_(k:n) ≤ x) = q by bisection, where
// P(X_(k:n) ≤ x) = Σ_{j=k}^{n} C(n,j) F^j (1−F)^{n−j}, F = 1−e^{−x/mean}.
func orderStatQuantile(k, n int, mean, q float64) float64 {
	cdf := func(x float64) float64 {
		f := 1 - math.Exp(-x/mean)
		var s float64
		for j := k; j <= n; j++ {
			s += binom(n, j) * math.Pow(f, float64(j)) * math.Pow(1-f, float64(n-j))
		}
		return s
	}
	lo, hi := 0.0, 100*mean
	for i := 0; i < 200; i++ {
		mid := (lo + hi) / 2
		if cdf(mid) < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// TestOrderStatistics: reads sent to all N replicas with exponential R legs
// (and instant responses) complete at the R-th order statistic of N iid
// exponentials; writes likewise at the W-th. Mean, median and p99 must match
// the closed forms.
func TestOrderStatistics(t *testing.T) {
	const mean = float64(4 * time.Millisecond)
	const trials = 40_000
	const n = 5
	sc := iid(n, expS(mean), constS(0), expS(mean), constS(0), constS(0))
	m := testModel(trials)
	for k := 1; k <= n; k++ {
		pr := m.predict(sc, []Policy{{N: n, R: k, W: k}}, Calibration{})[0]
		wantMean := orderStatMean(k, n, mean)
		// The mean of k:n has standard deviation mean·√Σ1/(n−i)²; 5 SE.
		var v float64
		for i := 0; i < k; i++ {
			v += 1 / float64((n-i)*(n-i))
		}
		tol := 5 * mean * math.Sqrt(v/trials)
		for _, c := range []struct {
			what string
			got  time.Duration
		}{{"read", pr.ReadMean}, {"write", pr.WriteMean}} {
			t.Logf("R=W=%d of %d: %s mean %.3f ms; formula %.3f ms", k, n, c.what, float64(c.got)/1e6, wantMean/1e6)
			if math.Abs(float64(c.got)-wantMean) > tol {
				t.Errorf("R=W=%d of %d: %s mean = %v; want %v ± %v", k, n, c.what, c.got, time.Duration(wantMean), time.Duration(tol))
			}
		}
		for _, q := range []struct {
			q    float64
			got  time.Duration
			rtol float64
		}{{0.5, pr.ReadP50, 0.02}, {0.99, pr.ReadP99, 0.06}} {
			want := orderStatQuantile(k, n, mean, q.q)
			if math.Abs(float64(q.got)-want) > q.rtol*want {
				t.Errorf("R=%d of %d: read p%v = %v; want %v ± %.0f%%", k, n, q.q*100, q.got, time.Duration(want), q.rtol*100)
			}
		}
	}
}

// TestNearestAndHedgedLatency: nearest routing waits for the R nearest
// replicas only, so a slow replica outside them does not count; hedging cuts
// the tail of an exponential replica by asking a second one.
func TestNearestAndHedgedLatency(t *testing.T) {
	ms := float64(time.Millisecond)
	sc := &scenario{atRisk: 1, gap: constS(0), nodes: []legs{
		{w: constS(ms), a: constS(ms), r: expS(ms), s: constS(0), rank: 1 * ms},
		{w: constS(ms), a: constS(ms), r: expS(ms), s: constS(0), rank: 1.1 * ms},
		{w: constS(ms), a: constS(ms), r: constS(50 * ms), s: constS(0), rank: 50 * ms},
	}}
	m := testModel(20_000)
	preds := m.predict(sc, []Policy{
		{N: 3, R: 1, W: 2, Read: ReadNearest},
		{N: 3, R: 1, W: 2, Read: ReadHedged},
		{N: 3, R: 2, W: 2, Read: ReadNearest},
		{N: 3, R: 3, W: 2},
	}, Calibration{})
	near, hedged, near2, all3 := preds[0], preds[1], preds[2], preds[3]
	// Nearest R=1: one Exp(1ms): p99 = ln(100) ms ≈ 4.6 ms.
	if want := math.Log(100) * ms; math.Abs(float64(near.ReadP99)-want) > 0.06*want {
		t.Errorf("nearest R=1 p99 = %v; want %v", near.ReadP99, time.Duration(want))
	}
	if near.ReadMsgs != 1 {
		t.Errorf("nearest R=1 msgs = %v; want 1", near.ReadMsgs)
	}
	// Hedged after the p95 (ln 20 ms ≈ 3 ms): the tail is min(X, d+Y).
	d := math.Log(20) * ms
	if math.Abs(float64(hedged.HedgeAfter)-d) > 0.05*d {
		t.Errorf("hedge after = %v; want %v", hedged.HedgeAfter, time.Duration(d))
	}
	if hedged.ReadP99 >= near.ReadP99 {
		t.Errorf("hedged p99 %v is not below unhedged %v", hedged.ReadP99, near.ReadP99)
	}
	if math.Abs(hedged.HedgeRate-0.05) > 0.01 {
		t.Errorf("hedge rate = %v; want 0.05", hedged.HedgeRate)
	}
	// P(min(X, d+Y) > x) = e^{−x}·e^{−(x−d)} for x > d: p99 solves
	// 2x − d = ln 100.
	if want := (math.Log(100)*ms + d) / 2; math.Abs(float64(hedged.ReadP99)-want) > 0.06*want {
		t.Errorf("hedged p99 = %v; want %v", hedged.ReadP99, time.Duration(want))
	}
	// The two nearest exclude the 50 ms replica; R=3 must wait for it.
	if near2.ReadP99 > 10*time.Millisecond {
		t.Errorf("nearest R=2 p99 = %v; want well below the slow replica's 50 ms", near2.ReadP99)
	}
	if all3.ReadP50 != 50*time.Millisecond {
		t.Errorf("R=3 p50 = %v; want 50ms", all3.ReadP50)
	}
}

// TestTimeouts: a replica that never answers makes operations that need it
// fail at the timeout, and hedging or ReadAll route around it.
func TestTimeouts(t *testing.T) {
	ms := float64(time.Millisecond)
	sc := &scenario{atRisk: 0, nodes: []legs{
		{w: constS(ms), a: constS(ms), r: constS(ms), s: constS(ms), rank: 1 * ms, rTimeout: 0.2, wTimeout: 0.2},
		{w: constS(ms), a: constS(ms), r: constS(2 * ms), s: constS(2 * ms), rank: 4 * ms},
		{w: constS(ms), a: constS(ms), r: constS(3 * ms), s: constS(3 * ms), rank: 6 * ms},
	}}
	m := testModel(20_000)
	m.Timeout = 100 * time.Millisecond
	preds := m.predict(sc, []Policy{
		{N: 3, R: 1, W: 3, Read: ReadNearest},
		{N: 3, R: 1, W: 2, Read: ReadHedged},
		{N: 3, R: 1, W: 1, Read: ReadAll},
	}, Calibration{})
	near, hedged, all := preds[0], preds[1], preds[2]
	if math.Abs(near.ReadFail-0.2) > 0.015 {
		t.Errorf("nearest read fail = %v; want 0.2", near.ReadFail)
	}
	if near.ReadP99 != m.Timeout {
		t.Errorf("nearest read p99 = %v; want the timeout %v", near.ReadP99, m.Timeout)
	}
	if math.Abs(near.WriteFail-0.2) > 0.015 {
		t.Errorf("W=3 write fail = %v; want 0.2", near.WriteFail)
	}
	if hedged.ReadFail != 0 || hedged.WriteFail != 0 {
		t.Errorf("hedged R=1 W=2: read fail %v, write fail %v; want 0, 0", hedged.ReadFail, hedged.WriteFail)
	}
	// Hedged after the p95 of the answered reads (2 ms): when replica 0
	// times out, replica 1 answers 2+4 ms after the read began.
	if hedged.ReadP99 != 6*time.Millisecond || math.Abs(hedged.HedgeRate-0.2) > 0.015 {
		t.Errorf("hedged R=1: p99 %v, hedge rate %v; want 6ms, 0.2", hedged.ReadP99, hedged.HedgeRate)
	}
	// ReadAll answers with the first reply: 2 ms when replica 0 is up, else 4 ms.
	if all.ReadFail != 0 || all.ReadP99 != 4*time.Millisecond || all.ReadP50 != 2*time.Millisecond {
		t.Errorf("all R=1: fail %v p50 %v p99 %v; want 0, 2ms, 4ms", all.ReadFail, all.ReadP50, all.ReadP99)
	}
}

// TestPredictDeterministic: the same seed and inputs give the same
// predictions bit for bit; another seed gives different noise.
func TestPredictDeterministic(t *testing.T) {
	obs := readHeavySlowReplica(rand.New(rand.NewPCG(3, 4)))
	cands := Candidates(Goal{MinRF: 3, MaxRF: 3, MaxStale: 1}, 0)
	m := testModel(1000)
	a, err := m.Predict(obs, cands, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Predict(obs, cands, Calibration{})
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%v: %+v then %+v", a[i].Policy, a[i], b[i])
		}
	}
	m.Seed++
	c, _ := m.Predict(obs, cands, Calibration{})
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Errorf("a different seed gave identical predictions")
	}
}

// TestHistPipelineClosedForm runs the N=3 R=W=1 closed form through the
// observation path: exponential legs recorded into histograms (quantised to
// 1/16 of a power of two), sampled back. The agreement is within the
// histogram's resolution plus Monte Carlo error.
func TestHistPipelineClosedForm(t *testing.T) {
	const mean = 10 * time.Millisecond
	rng := rand.New(rand.NewPCG(5, 6))
	obs := Observation{Reads: 1000, Writes: 1000}
	for i := 0; i < 3; i++ {
		r := ReplicaObservation{ID: string(rune('a' + i))}
		for _, h := range []*Hist{&r.W, &r.A, &r.R, &r.S} {
			for j := 0; j < 20000; j++ {
				h.Record(time.Duration(rng.ExpFloat64() * float64(mean)))
			}
		}
		obs.Replicas = append(obs.Replicas, r)
	}
	obs.Gap.RecordN(0, 1000) // every read right after a write
	m := testModel(100_000)
	pr, err := m.Predict(obs, []Policy{{N: 3, R: 1, W: 1}}, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	got := pr[0].RawStaleProb
	t.Logf("via histograms: P(stale) = %.4f; closed form %.4f (%.1f%% off)", got, stale3, 100*(got-stale3)/stale3)
	if math.Abs(got-stale3) > 0.03*stale3 {
		t.Errorf("P(stale) = %.4f; want %.4f ± 3%%", got, stale3)
	}
}

// TestAtRisk: the stale probability scales with the share of reads that
// follow a write; without gap samples but with writes, every read is
// assumed at risk right after a write; without writes, none is.
func TestAtRisk(t *testing.T) {
	var rtt Hist
	rtt.RecordN(time.Millisecond, 10)
	rtt.RecordN(3*time.Millisecond, 10)
	base := Observation{Replicas: []ReplicaObservation{{ID: "a", WriteRTT: rtt, ReadRTT: rtt}, {ID: "b", WriteRTT: rtt, ReadRTT: rtt}}}
	for _, tt := range []struct {
		name          string
		reads, writes uint64
		gaps          uint64
		want          float64
	}{
		{"half the reads follow a write", 1000, 10, 500, 0.5},
		{"no gaps, writes: worst case", 1000, 10, 0, 1},
		{"no writes", 1000, 0, 0, 0},
		{"more gaps than reads", 10, 10, 50, 1},
	} {
		o := base.Clone()
		o.Reads, o.Writes = tt.reads, tt.writes
		o.Gap.RecordN(0, tt.gaps)
		sc, err := scenarioOf(&o)
		if err != nil {
			t.Fatal(err)
		}
		if sc.atRisk != tt.want {
			t.Errorf("%s: at risk = %v; want %v", tt.name, sc.atRisk, tt.want)
		}
	}
	if _, err := scenarioOf(&Observation{Keyspace: "ks", Replicas: []ReplicaObservation{{ID: "a"}}}); err == nil {
		t.Errorf("no samples: err = nil; want ErrNoData")
	}
}

func TestSelectK(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(50)
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(rng.IntN(10)) // many ties
		}
		k := rng.IntN(n)
		sorted := append([]float64(nil), xs...)
		sortSmall(sorted)
		got := selectK(xs, k)
		if got != sorted[k] {
			t.Fatalf("selectK(%v, %d) = %v; want %v", sorted, k, got, sorted[k])
		}
		for i := 0; i < k; i++ {
			if xs[i] > got {
				t.Fatalf("after selectK, xs[%d] = %v > xs[k] = %v", i, xs[i], got)
			}
		}
	}
}
