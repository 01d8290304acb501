package checker

import (
	"fmt"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// PhantomStats are the no-phantom checker's figures.
type PhantomStats struct {
	// Reads checked (ok reads that found a value).
	Reads int `json:"reads"`
	// Phantom: values no one tried to write; FailedVisible: values of
	// writes that failed definitely; VersionMismatch: a read's version
	// differs from the one the write of its value was acknowledged with.
	Phantom         int `json:"phantom"`
	FailedVisible   int `json:"failed_visible"`
	VersionMismatch int `json:"version_mismatch"`
}

// NoPhantom checks that no read returns a value that no one wrote: every
// value read must have been written to that key by some invoked write that
// did not fail definitely, and when that write was acknowledged, the read's
// version must be the one its receipt gave. Replica-local probe reads are
// checked the same way.
func NoPhantom(ops []history.Op) Result {
	res := Result{Name: "no-phantom"}
	ki := indexPairs(ops)
	wv := writesByValue(ki)
	var st PhantomStats
	check := func(p history.Pair, key string, v *int64, raw string, ver *history.Version) {
		if v == nil && raw == "" {
			return
		}
		st.Reads++
		if raw != "" {
			st.Phantom++
			res.add(Anomaly{Type: "phantom", Key: key, Time: p.Call(), Ops: opIndexes(p),
				Description: fmt.Sprintf("read of %s returned %q, which the harness never writes: %s", key, raw, opRef(p))})
			return
		}
		w, ok := wv[key][*v]
		switch {
		case !ok:
			st.Phantom++
			res.add(Anomaly{Type: "phantom", Key: key, Time: p.Call(), Ops: opIndexes(p),
				Description: fmt.Sprintf("read of %s returned %d, which no one wrote to that key: %s", key, *v, opRef(p))})
		case w.typ == history.Fail:
			st.FailedVisible++
			res.add(Anomaly{Type: "failed-write-visible", Key: key, Time: p.Call(), Ops: opIndexes(p, w.pair),
				Description: fmt.Sprintf("read of %s returned %d, written by a write that failed definitely (%s): %s, write %s", key, *v, w.pair.Completion.Error, opRef(p), opRef(w.pair))})
		case w.version != nil && ver != nil && *ver != *w.version:
			st.VersionMismatch++
			res.add(Anomaly{Type: "version-mismatch", Key: key, Time: p.Call(), Ops: opIndexes(p, w.pair),
				Description: fmt.Sprintf("read of %s returned %d with version %v, but its write was acknowledged with version %v: %s", key, *v, *ver, *w.version, opRef(p))})
		}
	}
	for _, p := range ki.pairs {
		if p.Type() != history.OK {
			continue
		}
		switch p.Invoke.F {
		case history.FRead:
			check(p, p.Invoke.Key, p.Completion.Value, p.Completion.Raw, p.Completion.Version)
		}
	}
	for _, op := range ops {
		if op.F == history.FReplicaRead && op.Type == history.OK && !op.Tombstone {
			p := history.Pair{Invoke: op, Completion: &op}
			check(p, op.Key, op.Value, op.Raw, op.Version)
		}
	}
	res.Stats = st
	if res.Count > 0 {
		res.Valid = Invalid
	} else {
		res.Valid = Valid
	}
	res.Summary = fmt.Sprintf("%d values read: %d no one wrote, %d from failed writes, %d with a version other than their write's",
		st.Reads, st.Phantom, st.FailedVisible, st.VersionMismatch)
	return res
}
