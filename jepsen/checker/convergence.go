package checker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// ConvergenceStats are the convergence checker's figures.
type ConvergenceStats struct {
	// Keys probed, and written keys that were not probed.
	Keys       int `json:"keys"`
	Unprobed   int `json:"unprobed"`
	Replicas   int `json:"replica_reads"`
	Unreadable int `json:"unreadable_replicas"`
	// Divergent: keys whose replicas disagree. WrongWinner: keys whose
	// replicas agree on something other than the last-writer-wins winner of
	// the acknowledged and info writes.
	Divergent   int `json:"divergent"`
	WrongWinner int `json:"wrong_winner"`
}

// Convergence checks the replica-local reads the harness made after the
// heal (replica-read events, one per replica in each key's preference
// list): every replica of a key must hold the same version, and it must be
// the last-writer-wins winner among the writes that may have happened (ok
// and info): a version at least as new as every acknowledged write's,
// belonging to an ok or info write of that key (its acknowledged version if
// it was acknowledged), or nothing at all when no write may have happened.
func Convergence(ops []history.Op) Result {
	res := Result{Name: "convergence"}
	ki := indexPairs(ops)
	wv := writesByValue(ki)
	probes := map[string][]history.Op{}
	for _, op := range ops {
		if op.F == history.FReplicaRead {
			probes[op.Key] = append(probes[op.Key], op)
		}
	}
	var st ConvergenceStats
	for k, vals := range wv {
		if len(probes[k]) == 0 {
			for _, w := range vals {
				if w.typ != history.Fail {
					st.Unprobed++
					break
				}
			}
		}
	}
	keys := make([]string, 0, len(probes))
	for k := range probes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	unknown := false
	for _, k := range keys {
		st.Keys++
		reads := probes[k]
		var okReads []history.Op
		for _, r := range reads {
			st.Replicas++
			if r.Type == history.OK {
				okReads = append(okReads, r)
			} else {
				st.Unreadable++
				unknown = true
			}
		}
		if len(okReads) == 0 {
			continue
		}
		ver := func(r history.Op) history.Version {
			if r.Version == nil {
				return history.Version{}
			}
			return *r.Version
		}
		first := okReads[0]
		same := true
		for _, r := range okReads[1:] {
			if ver(r) != ver(first) || valueOr0(r.Value) != valueOr0(first.Value) || r.Tombstone != first.Tombstone {
				same = false
			}
		}
		idx := make([]int, 0, len(okReads))
		for _, r := range okReads {
			idx = append(idx, r.Index)
		}
		if !same {
			st.Divergent++
			var parts []string
			for _, r := range okReads {
				parts = append(parts, fmt.Sprintf("%s=%s@%v", r.Node, fmtVal(r.Value), ver(r)))
			}
			res.add(Anomaly{Type: "divergent", Key: k, Time: first.Time, Ops: idx,
				Description: fmt.Sprintf("replicas of %s disagree after the heal: %s", k, strings.Join(parts, ", "))})
			continue
		}
		// Agreed on one record; is it the winner?
		var newestOK *writeInfo
		mayExist := false
		for _, w := range wv[k] {
			if w.typ != history.Fail {
				mayExist = true
			}
			if w.typ == history.OK && w.version != nil && (newestOK == nil || newestOK.version.Less(*w.version)) {
				w := w
				newestOK = &w
			}
		}
		got := ver(first)
		var problem string
		switch {
		case first.Value == nil && mayExist && newestOK != nil:
			problem = fmt.Sprintf("every replica has nothing, but %s was acknowledged", opRef(newestOK.pair))
		case first.Value == nil:
			// No acknowledged write; nothing stored is a possible outcome.
		case newestOK != nil && got.Less(*newestOK.version):
			problem = fmt.Sprintf("replicas hold %d@%v, older than the acknowledged %s@%v", *first.Value, got, opRef(newestOK.pair), *newestOK.version)
		default:
			w, ok := wv[k][*first.Value]
			switch {
			case !ok:
				problem = fmt.Sprintf("replicas hold %d, which no one wrote", *first.Value)
			case w.typ == history.Fail:
				problem = fmt.Sprintf("replicas hold %d, from a write that failed definitely: %s", *first.Value, opRef(w.pair))
			case w.version != nil && *w.version != got:
				problem = fmt.Sprintf("replicas hold %d@%v, but its write was acknowledged as %v", *first.Value, got, *w.version)
			}
		}
		if problem != "" {
			st.WrongWinner++
			res.add(Anomaly{Type: "wrong-winner", Key: k, Time: first.Time, Ops: idx, Description: fmt.Sprintf("%s: %s", k, problem)})
		}
	}
	res.Stats = st
	switch {
	case res.Count > 0:
		res.Valid = Invalid
	case st.Keys == 0 || unknown:
		res.Valid = Unknown
	default:
		res.Valid = Valid
	}
	res.Summary = fmt.Sprintf("%d keys probed on %d replicas: %d divergent, %d not holding the last-writer-wins winner", st.Keys, st.Replicas, st.Divergent, st.WrongWinner)
	if st.Unreadable > 0 {
		res.Summary += fmt.Sprintf("; %d replica reads failed", st.Unreadable)
	}
	if st.Unprobed > 0 {
		res.Summary += fmt.Sprintf("; %d written keys not probed", st.Unprobed)
	}
	return res
}
