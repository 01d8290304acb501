package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// The tuner's JSON is decoded into local types with only the fields the
// experiment reads, rather than into tuner.Decision: the bench is a client
// and should depend on the wire format (client.TunerExplain's documented
// JSON), not on the server's internals.

type rawPolicy struct {
	N    int    `json:"n"`
	R    int    `json:"r"`
	W    int    `json:"w"`
	Read string `json:"read"`
}

func (p rawPolicy) String() string {
	if p.N == 0 {
		return "?"
	}
	s := fmt.Sprintf("R=%d W=%d", p.R, p.W)
	if p.R < p.N && p.Read != "" && p.Read != "all" {
		s += " " + p.Read
	}
	return s
}

// overlapping reports R+W > N.
func (p rawPolicy) overlapping() bool { return p.R+p.W > p.N }

type rawCandidate struct {
	Policy       rawPolicy `json:"policy"`
	StaleProb    float64   `json:"stale_prob"`
	RawStaleProb float64   `json:"raw_stale_prob"`
	ReadP99      int64     `json:"read_p99_ns"`
	WriteP99     int64     `json:"write_p99_ns"`
	Cost         float64   `json:"cost"`
	Allowed      bool      `json:"allowed"`
	MeetsStale   bool      `json:"meets_stale"`
	Rejected     string    `json:"rejected"`
}

type rawDecision struct {
	At          time.Time `json:"at"`
	From        rawPolicy `json:"from"`
	To          rawPolicy `json:"to"`
	Changed     bool      `json:"changed"`
	Reason      string    `json:"reason"`
	Explanation string    `json:"explanation"`
	Calibration float64   `json:"calibration"`
	Latency     struct {
		ReadOffset  int64 `json:"read_offset_ns"`
		WriteOffset int64 `json:"write_offset_ns"`
	} `json:"latency_calibration"`
	Current *rawCandidate `json:"current"`
	Chosen  *rawCandidate `json:"chosen"`
	Inputs  struct {
		Reads     uint64  `json:"reads"`
		Writes    uint64  `json:"writes"`
		AtRisk    float64 `json:"at_risk"`
		GapP50    int64   `json:"gap_p50_ns"`
		Probed    uint64  `json:"probed"`
		Stale     uint64  `json:"stale"`
		StaleRate float64 `json:"stale_rate"`
		Replicas  []struct {
			ID          string  `json:"id"`
			TimeoutRate float64 `json:"timeout_rate"`
		} `json:"replicas"`
	} `json:"inputs"`
}

// Decision is one tuner decision about the adaptive arm, as results.json
// keeps it.
type Decision struct {
	At time.Time `json:"at"`
	// OffsetS is seconds since the first phase began (negative: warm-up).
	OffsetS float64 `json:"offset_s"`
	// From and To are the configurations before and after ("R=1 W=3
	// nearest"); Changed reports whether they differ.
	From    string `json:"from"`
	To      string `json:"to"`
	Changed bool   `json:"changed"`
	// Overlapping reports whether To has R+W > N.
	Overlapping bool   `json:"overlapping"`
	Reason      string `json:"reason"`
	Explanation string `json:"explanation"`
	// PredictedStale is the model's (calibrated) stale-read probability of
	// the configuration in force after the decision, and PredictedReadP99Ms
	// its read p99.
	PredictedStale     float64 `json:"predicted_stale"`
	PredictedRawStale  float64 `json:"predicted_raw_stale"`
	PredictedReadP99Ms float64 `json:"predicted_read_p99_ms"`
	PredictedWriteP99M float64 `json:"predicted_write_p99_ms"`
	// Calibration is the factor applied to the raw prediction, and
	// ReadOffsetMs and WriteOffsetMs the latency calibration's offsets,
	// already in the predicted p99s.
	Calibration   float64 `json:"calibration"`
	ReadOffsetMs  float64 `json:"read_offset_ms"`
	WriteOffsetMs float64 `json:"write_offset_ms"`
	// TunerProbed, TunerStale and TunerStaleRate are the staleness the
	// tuner measured itself (read-repair probes) over its window.
	TunerProbed    uint64  `json:"tuner_probed"`
	TunerStale     uint64  `json:"tuner_stale"`
	TunerStaleRate float64 `json:"tuner_stale_rate"`
	// AtRisk and GapP50Ms describe the window's workload as the tuner saw
	// it: the share of reads that followed a write of their key, and the
	// median time after it.
	AtRisk   float64 `json:"at_risk"`
	GapP50Ms float64 `json:"gap_p50_ms"`
	// MaxTimeoutRate is the highest share of replica requests the tuner
	// counted as timed out, over the replicas of its window.
	MaxTimeoutRate float64 `json:"max_timeout_rate"`
	// Raw is the decision as the server recorded it (its candidates,
	// inputs and plan), kept for the decisions that changed the
	// configuration.
	Raw json.RawMessage `json:"raw,omitempty"`
}

// parseDecision decodes one decision of client.TunerExplain.
func parseDecision(js string, t0 time.Time) (Decision, error) {
	var r rawDecision
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return Decision{}, fmt.Errorf("decoding a tuner decision: %w", err)
	}
	d := Decision{
		At: r.At, OffsetS: r.At.Sub(t0).Seconds(),
		From: r.From.String(), To: r.To.String(), Changed: r.Changed, Overlapping: r.To.overlapping(),
		Reason: r.Reason, Explanation: r.Explanation, Calibration: r.Calibration,
		ReadOffsetMs: float64(r.Latency.ReadOffset) / 1e6, WriteOffsetMs: float64(r.Latency.WriteOffset) / 1e6,
		TunerProbed: r.Inputs.Probed, TunerStale: r.Inputs.Stale, TunerStaleRate: r.Inputs.StaleRate,
		AtRisk: r.Inputs.AtRisk, GapP50Ms: float64(r.Inputs.GapP50) / 1e6,
	}
	for _, rep := range r.Inputs.Replicas {
		d.MaxTimeoutRate = max(d.MaxTimeoutRate, rep.TimeoutRate)
	}
	if r.Changed {
		d.Raw = json.RawMessage(js)
	}
	// The report of the configuration left in force: Chosen when the
	// decision chose (it equals Current when holding), else Current.
	c := r.Chosen
	if c == nil {
		c = r.Current
	}
	if c != nil {
		d.PredictedStale, d.PredictedRawStale = c.StaleProb, c.RawStaleProb
		d.PredictedReadP99Ms, d.PredictedWriteP99M = float64(c.ReadP99)/1e6, float64(c.WriteP99)/1e6
	} else {
		d.PredictedStale = -1 // no prediction (no data yet)
	}
	return d, nil
}

// decisionLog polls the tuner's decisions about a keyspace and keeps every
// one it sees once. The server keeps only the latest ones, so it is polled
// more often than they are pushed out.
type decisionLog struct {
	c        *client.Client
	keyspace string
	t0       time.Time

	mu   sync.Mutex
	seen map[int64]bool
	all  []Decision
	// onChange is called for each new decision that changed the
	// configuration, for the progress output.
	onChange func(Decision)
}

// poll fetches the latest decisions and keeps the new ones.
func (l *decisionLog) poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	exps, err := l.c.TunerExplain(ctx, l.keyspace, 50)
	if err != nil {
		return fmt.Errorf("tuner explain %s: %w", l.keyspace, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var fresh []Decision
	for _, e := range exps {
		d, err := parseDecision(e.JSON, l.t0)
		if err != nil {
			return err
		}
		if k := d.At.UnixNano(); !l.seen[k] {
			l.seen[k] = true
			l.all = append(l.all, d)
			fresh = append(fresh, d)
		}
	}
	slices.SortFunc(l.all, func(a, b Decision) int { return a.At.Compare(b.At) })
	if l.onChange != nil {
		for _, d := range fresh {
			if d.Changed {
				l.onChange(d)
			}
		}
	}
	return nil
}

// run polls every interval until ctx ends.
func (l *decisionLog) run(ctx context.Context, every time.Duration, log func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.poll(ctx); err != nil && ctx.Err() == nil {
				log(err)
			}
		}
	}
}

// decisions returns what was collected, oldest first.
func (l *decisionLog) decisions() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// latest returns the newest decision, if any.
func (l *decisionLog) latest() (Decision, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return Decision{}, false
	}
	return l.all[len(l.all)-1], true
}

// WhatIfCandidate is the model's prediction for one configuration at the
// end of a phase (client.TunerWhatIf, neutral calibration).
type WhatIfCandidate struct {
	Policy      string  `json:"policy"`
	Overlapping bool    `json:"overlapping"`
	StaleProb   float64 `json:"stale_prob"`
	ReadP99Ms   float64 `json:"read_p99_ms"`
	WriteP99Ms  float64 `json:"write_p99_ms"`
	Cost        float64 `json:"cost"`
	Eligible    bool    `json:"eligible"`
	Rejected    string  `json:"rejected,omitempty"`
	isOne       bool
}

// parseWhatIf decodes client.TunerWhatIf's JSON.
func parseWhatIf(js string) ([]WhatIfCandidate, error) {
	var raw []rawCandidate
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		return nil, fmt.Errorf("decoding tuner what-if: %w", err)
	}
	out := make([]WhatIfCandidate, 0, len(raw))
	for _, c := range raw {
		out = append(out, WhatIfCandidate{
			Policy: c.Policy.String(), Overlapping: c.Policy.overlapping(), StaleProb: c.StaleProb,
			ReadP99Ms: float64(c.ReadP99) / 1e6, WriteP99Ms: float64(c.WriteP99) / 1e6, Cost: c.Cost,
			Eligible: c.Allowed && c.MeetsStale, Rejected: c.Rejected,
			// What arm one runs: level one reads the nearest replica
			// (the coordinator's own copy first).
			isOne: c.Policy.N == 3 && c.Policy.R == 1 && c.Policy.W == 1 && c.Policy.Read == "nearest",
		})
	}
	return out, nil
}

// whatIfOne returns the what-if prediction for level one's configuration.
func whatIfOne(cs []WhatIfCandidate) (WhatIfCandidate, bool) {
	for _, c := range cs {
		if c.isOne {
			return c, true
		}
	}
	return WhatIfCandidate{}, false
}
