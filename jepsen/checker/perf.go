package checker

import (
	"fmt"
	"sort"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// OpGroup summarizes the operations of one function at one level.
type OpGroup struct {
	F     string `json:"f"`
	Level string `json:"level"`
	OK    int    `json:"ok"`
	Fail  int    `json:"fail"`
	Info  int    `json:"info"`
	// LatencyMs is over the ok completions.
	LatencyMs quantiles `json:"latency_ms"`
}

// PhaseStats summarizes the client operations invoked in one phase.
type PhaseStats struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
	Ops     int     `json:"ops"`
	OK      int     `json:"ok"`
	// Rate is ok operations per second.
	Rate float64 `json:"ok_per_second"`
}

// PerfStats are the performance figures of a run.
type PerfStats struct {
	Ops    int          `json:"ops"`
	OK     int          `json:"ok"`
	Fail   int          `json:"fail"`
	Info   int          `json:"info"`
	Groups []OpGroup    `json:"groups"`
	Phases []PhaseStats `json:"phases"`
	// Availability is the fraction of operations that completed ok, while
	// faults were active and while none was.
	AvailabilityDuringFaults float64          `json:"availability_during_faults"`
	AvailabilityQuiet        float64          `json:"availability_quiet"`
	Faults                   []history.Window `json:"fault_windows,omitempty"`
}

// Perf summarizes latency, throughput and availability. It finds no
// anomalies: its verdict is always valid.
func Perf(ops []history.Op) Result {
	pairs := history.Pairs(ops)
	windows := history.FaultWindows(ops)
	type gk struct{ f, level string }
	groups := map[gk]*OpGroup{}
	lat := map[gk][]float64{}
	var st PerfStats
	var dOK, dAll, qOK, qAll int
	phaseOps := map[string]*PhaseStats{}
	for _, p := range pairs {
		k := gk{p.Invoke.F, p.Invoke.Level}
		g := groups[k]
		if g == nil {
			g = &OpGroup{F: k.f, Level: k.level}
			groups[k] = g
		}
		st.Ops++
		ok := false
		switch p.Type() {
		case history.OK:
			g.OK++
			st.OK++
			ok = true
			lat[k] = append(lat[k], ms(p.Return()-p.Call()))
		case history.Fail:
			g.Fail++
			st.Fail++
		default:
			g.Info++
			st.Info++
		}
		if history.Active(windows, p.Call()) {
			dAll++
			if ok {
				dOK++
			}
		} else if p.Invoke.Phase != history.PhaseFinal {
			qAll++
			if ok {
				qOK++
			}
		}
		ps := phaseOps[p.Invoke.Phase]
		if ps == nil {
			ps = &PhaseStats{Phase: p.Invoke.Phase}
			phaseOps[p.Invoke.Phase] = ps
		}
		ps.Ops++
		if ok {
			ps.OK++
		}
	}
	for k, g := range groups {
		g.LatencyMs = summarize(lat[k])
		st.Groups = append(st.Groups, *g)
	}
	sort.Slice(st.Groups, func(i, j int) bool {
		if st.Groups[i].F != st.Groups[j].F {
			return st.Groups[i].F < st.Groups[j].F
		}
		return st.Groups[i].Level < st.Groups[j].Level
	})
	// Phase durations from the phase markers.
	var marks []history.Op
	for _, op := range ops {
		if op.F == history.FPhase {
			marks = append(marks, op)
		}
	}
	for i, m := range marks {
		end := int64(0)
		if i+1 < len(marks) {
			end = marks[i+1].Time
		} else if len(ops) > 0 {
			end = ops[len(ops)-1].Time
		}
		ps := phaseOps[m.Phase]
		if ps == nil {
			ps = &PhaseStats{Phase: m.Phase}
		}
		ps.Seconds = round3(float64(end-m.Time) / 1e9)
		if ps.Seconds > 0 {
			ps.Rate = round3(float64(ps.OK) / ps.Seconds)
		}
		st.Phases = append(st.Phases, *ps)
	}
	if dAll > 0 {
		st.AvailabilityDuringFaults = round6(float64(dOK) / float64(dAll))
	}
	if qAll > 0 {
		st.AvailabilityQuiet = round6(float64(qOK) / float64(qAll))
	}
	st.Faults = windows
	sum := fmt.Sprintf("%d operations: %d ok, %d fail, %d info", st.Ops, st.OK, st.Fail, st.Info)
	if dAll > 0 {
		sum += fmt.Sprintf("; ok %.1f%% while faults were active, %.1f%% otherwise", 100*st.AvailabilityDuringFaults, 100*st.AvailabilityQuiet)
	}
	return Result{Name: "perf", Valid: Valid, Stats: st, Summary: sum}
}
