package paxos

import (
	"testing"

	"github.com/adaptkv/adaptkv/storage"
)

// The low bound refuses every ballot at or below it, naming the greater of
// it and the state's top; above it the plain transitions decide.
func TestLowBound(t *testing.T) {
	low := Ballot{Counter: 10, Node: 2}
	rec := storage.Record{Key: []byte("k"), Value: []byte("v"), Version: storage.Version{Timestamp: 5}}
	for _, tc := range []struct {
		name     string
		low      Ballot
		s        State
		b        Ballot
		ok       bool
		promised Ballot
	}{
		{"no low bound", Ballot{}, State{}, Ballot{Counter: 1, Node: 1}, true, Ballot{Counter: 1, Node: 1}},
		{"below", low, State{}, Ballot{Counter: 9, Node: 9}, false, low},
		{"equal", low, State{}, low, false, low},
		{"just above", low, State{}, Ballot{Counter: 10, Node: 3}, true, Ballot{Counter: 10, Node: 3}},
		{"above the bound, below the state", low, State{Promised: Ballot{Counter: 20, Node: 1}}, Ballot{Counter: 15, Node: 1}, false, Ballot{Counter: 20, Node: 1}},
		{"below both: the greater is named", low, State{Promised: Ballot{Counter: 20, Node: 1}}, Ballot{Counter: 5, Node: 1}, false, Ballot{Counter: 20, Node: 1}},
	} {
		_, p := PrepareAbove(tc.low, tc.s, tc.b)
		if p.OK != tc.ok || (!tc.ok && p.Promised != tc.promised) {
			t.Errorf("%s: prepare %v: %+v; want ok=%v promised=%v", tc.name, tc.b, p, tc.ok, tc.promised)
		}
		_, ok, promised := ProposeAbove(tc.low, tc.s, Proposal{Ballot: tc.b, Record: rec})
		if ok != tc.ok || promised != tc.promised {
			t.Errorf("%s: propose %v: ok=%v promised=%v; want %v %v", tc.name, tc.b, ok, promised, tc.ok, tc.promised)
		}
	}
}

// A state is cleanable unless it holds a proposal in progress.
func TestCleanable(t *testing.T) {
	b := func(c uint64) Ballot { return Ballot{Counter: c, Node: 1} }
	rec := storage.Record{Key: []byte("k"), Value: []byte("v"), Version: storage.Version{Timestamp: 5}}
	for _, tc := range []struct {
		name string
		s    State
		want bool
	}{
		{"empty", State{}, true},
		{"promise only", State{Promised: b(3)}, true},
		{"committed", State{Promised: b(3), Committed: b(3)}, true},
		{"accepted, in progress", State{Promised: b(3), Accepted: Proposal{Ballot: b(3), Record: rec}}, false},
		{"accepted below the commit (dead)", State{Promised: b(4), Accepted: Proposal{Ballot: b(3), Record: rec}, Committed: b(4)}, true},
		{"accepted noop", State{Promised: b(3), Accepted: Proposal{Ballot: b(3), Noop: true}}, true},
	} {
		if got := Cleanable(tc.s); got != tc.want {
			t.Errorf("%s: Cleanable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
