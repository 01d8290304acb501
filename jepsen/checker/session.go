package checker

import (
	"fmt"
	"sort"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// SessionStats are the session checker's figures.
type SessionStats struct {
	// Sessions and Keys checked (keys written by exactly one client).
	Sessions int `json:"sessions"`
	Keys     int `json:"keys"`
	// Reads checked.
	Reads int `json:"reads"`
	// ReadYourWrites and MonotonicReads count the violations.
	ReadYourWrites int `json:"read_your_writes_violations"`
	MonotonicReads int `json:"monotonic_reads_violations"`
}

// Session checks read-your-writes and monotonic reads for each client on
// the keys it alone writes. The client writes increasing values to its key,
// so "newer" is "greater":
//
//   - read-your-writes: a read returns at least the value of the client's
//     last acknowledged write to the key before the read began;
//   - monotonic reads: a read returns at least what the client's previous
//     read of the key returned.
//
// Writes with unknown outcome constrain nothing (their value may or may not
// be seen); reads during the final phase are the harness's, not the
// session's, and are skipped.
func Session(ops []history.Op) Result {
	res := Result{Name: "session"}
	pairs := history.Pairs(ops)
	writers := map[string]map[int]bool{}
	for _, p := range pairs {
		if isWrite(p.Invoke.F) && p.Invoke.Key != "" {
			if writers[p.Invoke.Key] == nil {
				writers[p.Invoke.Key] = map[int]bool{}
			}
			writers[p.Invoke.Key][p.Invoke.Client] = true
		}
	}
	type sk struct {
		client int
		key    string
	}
	type state struct {
		lastOK   *history.Pair
		lastRead *history.Pair
	}
	states := map[sk]*state{}
	var st SessionStats
	sessions := map[int]bool{}
	// Pairs are in invocation order, and a client runs one operation at a
	// time, so per client this is its program order.
	for i := range pairs {
		p := pairs[i]
		k := p.Invoke.Key
		if k == "" || p.Invoke.Phase == history.PhaseFinal || len(writers[k]) != 1 || !writers[k][p.Invoke.Client] {
			continue
		}
		id := sk{p.Invoke.Client, k}
		s := states[id]
		if s == nil {
			s = &state{}
			states[id] = s
			sessions[p.Invoke.Client] = true
		}
		switch {
		case isWrite(p.Invoke.F):
			if p.Type() == history.OK && p.Invoke.Value != nil {
				s.lastOK = &pairs[i]
			}
		case p.Invoke.F == history.FRead && p.Type() == history.OK:
			st.Reads++
			got := int64(0)
			if p.Completion.Value != nil {
				got = *p.Completion.Value
			}
			if w := s.lastOK; w != nil && got < *w.Invoke.Value {
				st.ReadYourWrites++
				res.add(Anomaly{Type: "read-your-writes", Key: k, Time: p.Call(), Ops: opIndexes(p, *w),
					Description: fmt.Sprintf("client %d read %s after its own acknowledged write of %d: %s, after %s", p.Invoke.Client, fmtVal(p.Completion.Value), *w.Invoke.Value, opRef(p), opRef(*w))})
			}
			if r := s.lastRead; r != nil {
				prev := int64(0)
				if r.Completion.Value != nil {
					prev = *r.Completion.Value
				}
				if got < prev {
					st.MonotonicReads++
					res.add(Anomaly{Type: "monotonic-reads", Key: k, Time: p.Call(), Ops: opIndexes(p, *r),
						Description: fmt.Sprintf("client %d read %s after it had read %d: %s, after %s", p.Invoke.Client, fmtVal(p.Completion.Value), prev, opRef(p), opRef(*r))})
				}
			}
			if s.lastRead == nil || got >= valueOr0(s.lastRead.Completion.Value) {
				s.lastRead = &pairs[i]
			}
		}
	}
	st.Sessions = len(sessions)
	st.Keys = len(states)
	res.Stats = st
	if res.Count > 0 {
		res.Valid = Invalid
	} else {
		res.Valid = Valid
	}
	res.Summary = fmt.Sprintf("%d reads by %d sessions on %d keys: %d read-your-writes and %d monotonic-reads violations",
		st.Reads, st.Sessions, st.Keys, st.ReadYourWrites, st.MonotonicReads)
	sort.SliceStable(res.Anomalies, func(i, j int) bool { return res.Anomalies[i].Time < res.Anomalies[j].Time })
	return res
}

func valueOr0(v *int64) int64 {
	if v == nil {
		return 0
	}
	return *v
}
