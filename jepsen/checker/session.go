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
	// ReadThenWrites counts the acknowledged writes checked against the
	// read before them (same client, key and coordinator); LostWrites
	// those that got a version not above the one read.
	ReadThenWrites int `json:"read_then_writes"`
	LostWrites     int `json:"lost_read_then_writes"`
	// OtherNode counts read-then-writes whose read and write different
	// coordinators served, and OtherNodeBelow those among them whose write
	// got a version below the one read. Nothing orders those two versions
	// (the client carries no session token to the second coordinator), so
	// they are figures, not violations.
	OtherNode      int `json:"read_then_writes_other_node"`
	OtherNodeBelow int `json:"read_then_writes_other_node_below"`
}

// Session checks read-your-writes, monotonic reads and read-then-writes for
// each client on the keys it alone writes. The client writes increasing
// values to its key, so "newer" is "greater":
//
//   - read-your-writes: a read returns at least the value of the client's
//     last acknowledged write to the key before the read began;
//   - monotonic reads: a read returns at least what the client's previous
//     read of the key returned;
//   - read-then-write: a write acknowledged right after the client's read
//     of the same key, coordinated by the same node, gets a version above
//     the version that read returned. A coordinator's hybrid clock moves
//     past every version it sees, so the write orders after what its
//     client read; a version at or below it loses to the value read under
//     last writer wins, and the acknowledged write is silently dropped
//     (found under the clock nemesis, where a coordinator behind the node
//     that stamped the value stamps a lower one). It assumes the
//     coordinator did not restart between the two: its clock is not
//     persisted. Pairs served by two coordinators are counted, not judged.
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
		// prev is the client's previous operation on the key.
		prev *history.Pair
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
		prev := s.prev
		s.prev = &pairs[i]
		switch {
		case isWrite(p.Invoke.F):
			if p.Type() == history.OK && p.Invoke.Value != nil {
				s.lastOK = &pairs[i]
			}
			if prev == nil || prev.Invoke.F != history.FRead || prev.Type() != history.OK || prev.Completion.Version == nil ||
				p.Type() != history.OK || p.Completion.Version == nil {
				break
			}
			rv, wv := *prev.Completion.Version, *p.Completion.Version
			if prev.Completion.Node == "" || prev.Completion.Node != p.Completion.Node {
				st.OtherNode++
				if wv.Less(rv) {
					st.OtherNodeBelow++
				}
				break
			}
			st.ReadThenWrites++
			if !rv.Less(wv) {
				st.LostWrites++
				res.add(Anomaly{Type: "lost-read-then-write", Key: k, Time: p.Call(), Ops: opIndexes(p, *prev),
					Description: fmt.Sprintf("client %d read %s at version %s through %s, then wrote %s through the same node, which stamped it %s, not above: last writer wins drops the acknowledged write: %s, after %s",
						p.Invoke.Client, fmtVal(prev.Completion.Value), fmtVersion(rv), p.Completion.Node, fmtVal(p.Invoke.Value), fmtVersion(wv), opRef(p), opRef(*prev))})
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
	res.Summary = fmt.Sprintf("%d reads by %d sessions on %d keys: %d read-your-writes and %d monotonic-reads violations; %d of %d read-then-writes through one node lost (%d through two nodes, %d of them stamped below the read)",
		st.Reads, st.Sessions, st.Keys, st.ReadYourWrites, st.MonotonicReads, st.LostWrites, st.ReadThenWrites, st.OtherNode, st.OtherNodeBelow)
	sort.SliceStable(res.Anomalies, func(i, j int) bool { return res.Anomalies[i].Time < res.Anomalies[j].Time })
	return res
}

// fmtVersion prints a version as wall time, logical counter and node.
func fmtVersion(v history.Version) string {
	return fmt.Sprintf("%s+%d/n%d", v.WallTime().UTC().Format("15:04:05.000"), v.Timestamp&0xffff, v.Node)
}

func valueOr0(v *int64) int64 {
	if v == nil {
		return 0
	}
	return *v
}
