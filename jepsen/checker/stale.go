package checker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// StaleRead is one read judged stale.
type StaleRead struct {
	// Read is the read's history index.
	Read int `json:"read"`
	// Versions is how many acknowledged newer versions it missed.
	Versions int `json:"versions"`
	// AgeMs is how long before the read began the first missed write had
	// been acknowledged.
	AgeMs float64 `json:"age_ms"`
	// During is true when a fault was active at the read's invocation.
	During bool `json:"during_fault"`
}

// LevelStaleness is the staleness of the reads at one consistency level.
type LevelStaleness struct {
	Level string `json:"level"`
	Reads int    `json:"reads"`
	Stale int    `json:"stale"`
	// Fraction is Stale/Reads; CI95 its Wilson 95% interval.
	Fraction float64    `json:"fraction"`
	CI95     [2]float64 `json:"ci95"`
	// Versions and AgeMs summarize how stale the stale reads were.
	Versions quantiles `json:"versions_behind"`
	AgeMs    quantiles `json:"age_ms"`
	// DuringFaults and Quiet split the reads by whether a fault was active
	// when they began.
	DuringFaults Split `json:"during_faults"`
	Quiet        Split `json:"quiet"`
}

// Split is a reads/stale count.
type Split struct {
	Reads    int     `json:"reads"`
	Stale    int     `json:"stale"`
	Fraction float64 `json:"fraction"`
}

// StaleStats are the staleness checker's figures.
type StaleStats struct {
	// Levels are per consistency level, in the order one, quorum, all.
	Levels []LevelStaleness `json:"levels"`
	// Violations counts stale reads that break the R+W>N claim.
	Violations int `json:"quorum_violations"`
}

var levelOrder = map[string]int{api.LevelOne.String(): 0, api.LevelQuorum.String(): 1, api.LevelAll.String(): 2}

// Staleness measures, for every level, the fraction of reads that returned
// a value older than the newest write acknowledged before the read began,
// and how old: in versions (the acknowledged newer versions missed) and in
// milliseconds (since the first of them was acknowledged). "Older" is the
// store's own order, the version (last writer wins); a read that found
// nothing has the zero version.
//
// It is a measurement, not a claim, except where the quorums overlap: a
// stale read whose R plus a missed write's W exceeds N (quorum reads of
// quorum writes, anything at all) breaks the documented guarantee and makes
// the result invalid. Reads of the harness's own final phase are left out.
func Staleness(ops []history.Op) Result {
	res := Result{Name: "staleness"}
	ki := indexPairs(ops)
	windows := history.FaultWindows(ops)
	type agg struct {
		LevelStaleness
		versions, ages []float64
	}
	by := map[string]*agg{}
	var st StaleStats
	for _, k := range ki.keys {
		var writes []history.Pair
		for _, i := range ki.byKey[k] {
			p := ki.pairs[i]
			if isWrite(p.Invoke.F) && p.Type() == history.OK && p.Completion.Version != nil {
				writes = append(writes, p)
			}
		}
		sort.Slice(writes, func(i, j int) bool { return writes[i].Return() < writes[j].Return() })
		for _, i := range ki.byKey[k] {
			r := ki.pairs[i]
			if r.Invoke.F != history.FRead || r.Type() != history.OK || r.Invoke.Phase == history.PhaseFinal || r.Invoke.Phase == history.PhaseConverge {
				continue
			}
			lvl := r.Invoke.Level
			a := by[lvl]
			if a == nil {
				a = &agg{LevelStaleness: LevelStaleness{Level: lvl}}
				by[lvl] = a
			}
			during := history.Active(windows, r.Call())
			a.Reads++
			if during {
				a.DuringFaults.Reads++
			} else {
				a.Quiet.Reads++
			}
			var got history.Version
			if r.Completion.Version != nil && r.Completion.Value != nil {
				got = *r.Completion.Version
			}
			var missed []history.Pair
			for _, w := range writes {
				if w.Return() >= r.Call() {
					break
				}
				if got.Less(*w.Completion.Version) {
					missed = append(missed, w)
				}
			}
			if len(missed) == 0 {
				continue
			}
			a.Stale++
			if during {
				a.DuringFaults.Stale++
			} else {
				a.Quiet.Stale++
			}
			age := r.Call() - missed[0].Return()
			a.versions = append(a.versions, float64(len(missed)))
			a.ages = append(a.ages, ms(age))
			n := r.Completion.N
			for _, w := range missed {
				if n > 0 && r.Completion.Required+w.Completion.Required > n {
					st.Violations++
					res.add(Anomaly{Type: "stale-read", Key: k, Time: r.Call(), Ops: opIndexes(r, w),
						Description: fmt.Sprintf("%s read (R=%d) missed a write acknowledged by W=%d of N=%d replicas %.1fms before it began: %s, missed %s",
							lvl, r.Completion.Required, w.Completion.Required, n, ms(r.Call()-w.Return()), opRef(r), opRef(w))})
					break
				}
			}
		}
	}
	for _, a := range by {
		a.Fraction = round6(float64(a.Stale) / float64(max(1, a.Reads)))
		a.CI95 = wilson(a.Stale, a.Reads)
		a.Versions = summarize(a.versions)
		a.AgeMs = summarize(a.ages)
		for _, s := range []*Split{&a.DuringFaults, &a.Quiet} {
			s.Fraction = round6(float64(s.Stale) / float64(max(1, s.Reads)))
		}
		st.Levels = append(st.Levels, a.LevelStaleness)
	}
	sort.Slice(st.Levels, func(i, j int) bool {
		oi, oki := levelOrder[st.Levels[i].Level]
		oj, okj := levelOrder[st.Levels[j].Level]
		if oki && okj {
			return oi < oj
		}
		return st.Levels[i].Level < st.Levels[j].Level
	})
	res.Stats = st
	var parts []string
	for _, l := range st.Levels {
		s := fmt.Sprintf("%s %d/%d stale (%.2f%%)", l.Level, l.Stale, l.Reads, 100*l.Fraction)
		if l.Stale > 0 {
			s += fmt.Sprintf(", %.1f versions and %.0fms behind on average (max %.0f, %.0fms)", l.Versions.Mean, l.AgeMs.Mean, l.Versions.Max, l.AgeMs.Max)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		parts = append(parts, "no reads")
	}
	res.Summary = strings.Join(parts, "; ")
	if st.Violations > 0 {
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("%d reads broke R+W>N: ", st.Violations) + res.Summary
	} else {
		res.Valid = Valid
	}
	return res
}
