package checker

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// Validity is a checker's verdict: true, false, or unknown (the checker
// could not decide, e.g. a timeout or a missing final read). It marshals to
// JSON true, false or "unknown", as Jepsen's :valid? does.
type Validity int

// Verdicts.
const (
	Unknown Validity = iota
	Valid
	Invalid
)

// String returns "true", "false" or "unknown".
func (v Validity) String() string {
	switch v {
	case Valid:
		return "true"
	case Invalid:
		return "false"
	}
	return "unknown"
}

// MarshalJSON encodes true, false or "unknown".
func (v Validity) MarshalJSON() ([]byte, error) {
	switch v {
	case Valid:
		return []byte("true"), nil
	case Invalid:
		return []byte("false"), nil
	}
	return []byte(`"unknown"`), nil
}

// UnmarshalJSON decodes true, false or "unknown".
func (v *Validity) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*v = Valid
	case "false":
		*v = Invalid
	case `"unknown"`, "null":
		*v = Unknown
	default:
		return fmt.Errorf("checker: validity %s: want true, false or \"unknown\"", b)
	}
	return nil
}

// Merge combines verdicts: any Invalid is Invalid, else any Unknown is
// Unknown, else Valid. No verdicts at all is Valid.
func Merge(vs ...Validity) Validity {
	out := Valid
	for _, v := range vs {
		switch v {
		case Invalid:
			return Invalid
		case Unknown:
			out = Unknown
		}
	}
	return out
}

// Anomaly is one thing a checker found wrong.
type Anomaly struct {
	// Type names the anomaly: non-linearizable, lost, unexpected,
	// stale-read, read-your-writes, monotonic-reads, divergent, phantom...
	Type string `json:"type"`
	// Key is the key involved.
	Key string `json:"key,omitempty"`
	// Description says what happened, naming the operations.
	Description string `json:"description"`
	// Ops are the history indexes of the events involved, the offending
	// one first.
	Ops []int `json:"ops,omitempty"`
	// Time is when it happened (history nanoseconds), for plots.
	Time int64 `json:"time,omitempty"`
}

// MaxAnomalies bounds the anomalies a Result lists; Count keeps the total.
const MaxAnomalies = 50

// Result is one checker's verdict.
type Result struct {
	// Name is the checker's name.
	Name string `json:"name"`
	// Valid is the verdict.
	Valid Validity `json:"valid"`
	// Summary is one line for people.
	Summary string `json:"summary"`
	// Count is the number of anomalies found; Anomalies lists the first
	// MaxAnomalies of them.
	Count     int       `json:"anomaly_count"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	// Stats are the checker's figures.
	Stats any `json:"stats,omitempty"`
}

func (r *Result) add(a Anomaly) {
	r.Count++
	if len(r.Anomalies) < MaxAnomalies {
		r.Anomalies = append(r.Anomalies, a)
	}
}

// UnmarshalJSON keeps Stats as raw JSON (its type depends on the checker).
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var aux struct {
		plain
		Stats json.RawMessage `json:"stats,omitempty"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*r = Result(aux.plain)
	if len(aux.Stats) > 0 {
		r.Stats = aux.Stats
	}
	return nil
}

// keyIndex groups the history's completed client operations by key.
type keyIndex struct {
	pairs []history.Pair
	byKey map[string][]int // indexes into pairs, in invocation order
	keys  []string         // sorted
}

func indexPairs(ops []history.Op) *keyIndex {
	ki := &keyIndex{pairs: history.Pairs(ops), byKey: map[string][]int{}}
	for i, p := range ki.pairs {
		if p.Invoke.Key == "" {
			continue
		}
		if _, ok := ki.byKey[p.Invoke.Key]; !ok {
			ki.keys = append(ki.keys, p.Invoke.Key)
		}
		ki.byKey[p.Invoke.Key] = append(ki.byKey[p.Invoke.Key], i)
	}
	sort.Strings(ki.keys)
	return ki
}

// isWrite reports whether f writes a key.
func isWrite(f string) bool { return f == history.FWrite || f == history.FAdd || f == history.FCas }

// writeInfo is what is known of one attempted write.
type writeInfo struct {
	pair    history.Pair
	typ     history.Type
	version *history.Version // from the ok receipt
}

// writesByValue maps each key's attempted values to their writes.
func writesByValue(ki *keyIndex) map[string]map[int64]writeInfo {
	out := map[string]map[int64]writeInfo{}
	for _, k := range ki.keys {
		for _, i := range ki.byKey[k] {
			p := ki.pairs[i]
			if !isWrite(p.Invoke.F) || p.Invoke.Value == nil {
				continue
			}
			m := out[k]
			if m == nil {
				m = map[int64]writeInfo{}
				out[k] = m
			}
			wi := writeInfo{pair: p, typ: p.Type()}
			if p.Completion != nil && p.Completion.Type == history.OK {
				wi.version = p.Completion.Version
			}
			m[*p.Invoke.Value] = wi
		}
	}
	return out
}

// quantiles summarizes a sample.
type quantiles struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

func summarize(xs []float64) quantiles {
	if len(xs) == 0 {
		return quantiles{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return quantiles{N: len(s), Mean: round3(sum / float64(len(s))), P50: round3(q(0.5)), P90: round3(q(0.9)), P99: round3(q(0.99)), Max: round3(s[len(s)-1])}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// wilson returns the Wilson score 95% interval of k successes in n trials.
func wilson(k, n int) [2]float64 {
	if n == 0 {
		return [2]float64{0, 1}
	}
	const z = 1.959964
	p := float64(k) / float64(n)
	nf := float64(n)
	den := 1 + z*z/nf
	c := (p + z*z/(2*nf)) / den
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return [2]float64{round6(max(0, c-h)), round6(min(1, c+h))}
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func fmtVal(v *int64) string {
	if v == nil {
		return "nil"
	}
	return strconv.FormatInt(*v, 10)
}

func fmtTime(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }

func opRef(p history.Pair) string {
	s := fmt.Sprintf("%s(%s", p.Invoke.F, p.Invoke.Key)
	switch {
	case p.Invoke.F == history.FCas:
		from := p.Invoke.From
		if from != nil && *from == 0 {
			from = nil // 0 means absent
		}
		s += ", " + fmtVal(from) + " -> " + fmtVal(p.Invoke.Value)
	case isWrite(p.Invoke.F):
		s += ", " + fmtVal(p.Invoke.Value)
	}
	s += ")"
	if c := p.Completion; c != nil {
		if p.Invoke.F == history.FRead && c.Type == history.OK {
			s += " -> " + fmtVal(c.Value)
		}
		if c.NotApplied {
			s += " not applied, current " + fmtVal(c.Value)
		}
		s += fmt.Sprintf(" %s p%d #%d [%s..%s]", c.Type, p.Invoke.Process, p.Invoke.Index, fmtTime(p.Call()), fmtTime(c.Time))
		if c.Node != "" {
			s += " via " + c.Node
		}
	} else {
		s += fmt.Sprintf(" pending p%d #%d [%s..]", p.Invoke.Process, p.Invoke.Index, fmtTime(p.Call()))
	}
	return s
}

func opIndexes(ps ...history.Pair) []int {
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Invoke.Index)
	}
	return out
}
