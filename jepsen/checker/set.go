package checker

import (
	"fmt"
	"sort"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// SetStats are the set checker's figures, per element.
type SetStats struct {
	// Attempted adds, and how they completed.
	Attempted int `json:"attempted"`
	OK        int `json:"ok"`
	Info      int `json:"info"`
	Failed    int `json:"failed"`
	// Found is the number of elements in the final read.
	Found int `json:"found"`
	// Lost: acknowledged adds missing from the final read.
	Lost []int64 `json:"lost,omitempty"`
	// Recovered: info adds present in the final read (they did happen).
	Recovered []int64 `json:"recovered,omitempty"`
	// Unexpected: elements in the final read that were never added, or
	// whose add failed definitely.
	Unexpected []int64 `json:"unexpected,omitempty"`
	// ScanMissed: elements the final scan missed but a final read of their
	// own key found (a scan anomaly, not a loss).
	ScanMissed []int64 `json:"scan_missed,omitempty"`
	// LostCount etc. are the sizes of the lists above (which may be cut).
	LostCount       int `json:"lost_count"`
	RecoveredCount  int `json:"recovered_count"`
	UnexpectedCount int `json:"unexpected_count"`
	ScanMissedCount int `json:"scan_missed_count"`
}

const maxListed = 200

func capList(xs []int64) []int64 {
	if len(xs) > maxListed {
		return xs[:maxListed]
	}
	return xs
}

// Set checks the set workload: every add writes the element's own key, and
// after the heal a final read-all (a scan at the strongest level) must hold
// every acknowledged element. Elements missing from the scan are confirmed
// by final reads of their keys when the history has them.
func Set(ops []history.Op) Result {
	res := Result{Name: "set"}
	pairs := history.Pairs(ops)
	adds := map[int64]history.Pair{}
	var final *history.Op
	finalRead := map[int64]bool{} // element -> found by a final read of its key
	keyOf := map[string]int64{}
	for _, p := range pairs {
		switch p.Invoke.F {
		case history.FAdd:
			if p.Invoke.Value != nil {
				adds[*p.Invoke.Value] = p
				keyOf[p.Invoke.Key] = *p.Invoke.Value
			}
		case history.FReadAll:
			if p.Type() == history.OK {
				c := *p.Completion
				final = &c
			}
		}
	}
	for _, p := range pairs {
		if p.Invoke.F != history.FRead || p.Invoke.Phase != history.PhaseFinal || p.Type() != history.OK {
			continue
		}
		if e, ok := keyOf[p.Invoke.Key]; ok {
			finalRead[e] = finalRead[e] || p.Completion.Value != nil
		}
	}
	var st SetStats
	st.Attempted = len(adds)
	for _, p := range adds {
		switch p.Type() {
		case history.OK:
			st.OK++
		case history.Fail:
			st.Failed++
		default:
			st.Info++
		}
	}
	if final == nil {
		res.Valid = Unknown
		res.Summary = fmt.Sprintf("unknown: no successful final read; %d adds attempted, %d acknowledged", st.Attempted, st.OK)
		res.Stats = st
		return res
	}
	found := map[int64]bool{}
	for _, e := range final.Values {
		found[e] = true
	}
	st.Found = len(found)
	elems := make([]int64, 0, len(adds))
	for e := range adds {
		elems = append(elems, e)
	}
	sort.Slice(elems, func(i, j int) bool { return elems[i] < elems[j] })
	var lost, recovered, unexpected, missed []int64
	for _, e := range elems {
		p := adds[e]
		present := found[e]
		if !present && finalRead[e] {
			missed = append(missed, e)
			res.add(Anomaly{Type: "scan-missed", Key: p.Invoke.Key, Time: p.Call(), Ops: opIndexes(p),
				Description: fmt.Sprintf("element %d is stored (a final read of %s found it) but the final scan did not return it; added by %s", e, p.Invoke.Key, opRef(p))})
			present = true
		}
		switch t := p.Type(); {
		case t == history.OK && !present:
			lost = append(lost, e)
			res.add(Anomaly{Type: "lost", Key: p.Invoke.Key, Time: p.Call(), Ops: opIndexes(p),
				Description: fmt.Sprintf("acknowledged element %d is missing from the final read: %s", e, opRef(p))})
		case t == history.Info && present:
			recovered = append(recovered, e)
		case t == history.Fail && present:
			unexpected = append(unexpected, e)
			res.add(Anomaly{Type: "unexpected", Key: p.Invoke.Key, Time: p.Call(), Ops: opIndexes(p),
				Description: fmt.Sprintf("element %d is present although its add failed definitely (%s): %s", e, p.Completion.Error, opRef(p))})
		}
	}
	var extra []int64
	for e := range found {
		if _, ok := adds[e]; !ok {
			extra = append(extra, e)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	for _, e := range extra {
		unexpected = append(unexpected, e)
		res.add(Anomaly{Type: "unexpected", Ops: []int{final.Index}, Description: fmt.Sprintf("element %d is in the final read but was never added", e)})
	}
	st.LostCount, st.RecoveredCount, st.UnexpectedCount, st.ScanMissedCount = len(lost), len(recovered), len(unexpected), len(missed)
	st.Lost, st.Recovered, st.Unexpected, st.ScanMissed = capList(lost), capList(recovered), capList(unexpected), capList(missed)
	res.Stats = st
	if len(lost)+len(unexpected)+len(missed) > 0 {
		res.Valid = Invalid
	} else {
		res.Valid = Valid
	}
	res.Summary = fmt.Sprintf("%d adds (%d ok, %d info, %d failed); final read found %d: lost %d, recovered %d, unexpected %d",
		st.Attempted, st.OK, st.Info, st.Failed, st.Found, len(lost), len(recovered), len(unexpected))
	if len(missed) > 0 {
		res.Summary += fmt.Sprintf(", missed by the scan %d", len(missed))
	}
	return res
}
