package antientropy_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/adaptkv/adaptkv/replication/antientropy"
	"github.com/adaptkv/adaptkv/storage"
)

// The leaves of an arc cut it into equal sub-arcs, in order, and every
// token of the arc falls in one of them.
func TestArcLeaf(t *testing.T) {
	tests := []struct {
		name  string
		arc   antientropy.Arc
		depth int
		token uint64
		want  uint32
	}{
		{"first token", antientropy.Arc{After: 0, Through: 1024}, 10, 1, 0},
		{"last token", antientropy.Arc{After: 0, Through: 1024}, 10, 1024, 1023},
		{"middle", antientropy.Arc{After: 100, Through: 200}, 1, 150, 0},
		{"middle plus one", antientropy.Arc{After: 100, Through: 200}, 1, 151, 1},
		{"wrapping, before the wrap", antientropy.Arc{After: math.MaxUint64 - 9, Through: 10}, 1, math.MaxUint64, 0},
		{"wrapping, past the wrap", antientropy.Arc{After: math.MaxUint64 - 9, Through: 10}, 1, 0, 0},
		{"wrapping, second half", antientropy.Arc{After: math.MaxUint64 - 9, Through: 10}, 1, 1, 1},
		{"whole ring, first", antientropy.Arc{After: 5, Through: 5}, 12, 6, 0},
		{"whole ring, last", antientropy.Arc{After: 5, Through: 5}, 12, 5, 4095},
		{"whole ring, depth 0", antientropy.Arc{After: 5, Through: 5}, 0, 77, 0},
		{"one-token arc", antientropy.Arc{After: 7, Through: 8}, 16, 8, 0},
	}
	for _, tt := range tests {
		if !tt.arc.Contains(tt.token) {
			t.Errorf("%s: arc %+v does not contain %d", tt.name, tt.arc, tt.token)
		}
		if got := tt.arc.Leaf(tt.token, tt.depth); got != tt.want {
			t.Errorf("%s: Leaf(%d, %d) = %d; want %d", tt.name, tt.token, tt.depth, got, tt.want)
		}
	}
}

// Whatever the arc, leaves are nondecreasing clockwise and stay below
// 2^depth.
func TestArcLeafMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		a := antientropy.Arc{After: rng.Uint64(), Through: rng.Uint64()}
		if rng.IntN(5) == 0 {
			a.Through = a.After
		}
		depth := rng.IntN(17)
		var offs []uint64
		for range 50 {
			offs = append(offs, rng.Uint64())
		}
		prev := uint32(0)
		// Walk clockwise from After by sorted offsets within the span.
		span := a.Through - a.After
		var ws []uint64
		for _, o := range offs {
			if span != 0 {
				o %= span
			}
			ws = append(ws, o)
		}
		slices.Sort(ws)
		for _, o := range ws {
			tok := a.After + 1 + o
			if !a.Contains(tok) {
				t.Fatalf("arc %+v: token %d at offset %d not contained", a, tok, o)
			}
			l := a.Leaf(tok, depth)
			if l < prev || uint64(l) >= 1<<depth {
				t.Fatalf("arc %+v depth %d: offset %d in leaf %d after leaf %d", a, depth, o, l, prev)
			}
			prev = l
		}
	}
}

// bruteDiff compares two sets of entries leaf by leaf: the leaves whose
// records (token and hash) differ as multisets.
func bruteDiff(arc antientropy.Arc, depth int, a, b []antientropy.Entry) []uint32 {
	leaves := func(es []antientropy.Entry) map[uint32][]antientropy.Entry {
		m := map[uint32][]antientropy.Entry{}
		for _, e := range es {
			if arc.Contains(e.Token) {
				l := arc.Leaf(e.Token, depth)
				m[l] = append(m[l], e)
			}
		}
		for _, v := range m {
			slices.SortFunc(v, func(x, y antientropy.Entry) int {
				if x.Token != y.Token {
					return cmpU(x.Token, y.Token)
				}
				return cmpU(x.Hash, y.Hash)
			})
		}
		return m
	}
	la, lb := leaves(a), leaves(b)
	var out []uint32
	for l := range uint64(1) << depth {
		if !slices.Equal(la[uint32(l)], lb[uint32(l)]) {
			out = append(out, uint32(l))
		}
	}
	return out
}

func cmpU(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Property: the top-down comparison finds exactly the leaves whose records
// differ, whatever the arc (wrapping, whole ring), depth, step and the
// differences (records missing, newer, extra, off the arc), and two trees
// of the same records agree at the root whatever order they came in.
func TestCompareMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 500 {
		arc := antientropy.Arc{After: rng.Uint64(), Through: rng.Uint64()}
		switch rng.IntN(4) {
		case 0:
			arc.Through = arc.After // whole ring
		case 1:
			arc.Through = arc.After + uint64(rng.IntN(1000)) + 1 // narrow
		}
		depth := rng.IntN(13)
		step := 1 + rng.IntN(6)
		n := rng.IntN(300)
		var a []antientropy.Entry
		for range n {
			tok := rng.Uint64()
			if rng.IntN(2) == 0 && arc.After != arc.Through {
				tok = arc.After + 1 + rng.Uint64()%(arc.Through-arc.After) // on the arc
			}
			a = append(a, antientropy.Entry{Token: tok, Hash: rng.Uint64()})
		}
		b := slices.Clone(a)
		rng.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
		if ta, tb := antientropy.NewTree(arc, depth, a), antientropy.NewTree(arc, depth, b); ta.Hash(0, 0) != tb.Hash(0, 0) || len(antientropy.Compare(ta, tb, step)) != 0 {
			t.Fatalf("iter %d: same records in another order differ", iter)
		}
		for range rng.IntN(6) {
			if len(b) == 0 {
				break
			}
			switch i := rng.IntN(len(b)); rng.IntN(3) {
			case 0:
				b = slices.Delete(b, i, i+1) // missed a write
			case 1:
				b[i].Hash = rng.Uint64() // another version
			case 2:
				b = append(b, antientropy.Entry{Token: b[i].Token, Hash: rng.Uint64()}) // a second key, same token
			}
		}
		ta, tb := antientropy.NewTree(arc, depth, a), antientropy.NewTree(arc, depth, b)
		got := antientropy.Compare(ta, tb, step)
		want := bruteDiff(arc, depth, a, b)
		if !slices.Equal(got, want) {
			t.Fatalf("iter %d (arc %+v depth %d step %d): Compare = %v; want %v", iter, arc, depth, step, got, want)
		}
		if (len(want) == 0) != (ta.Hash(0, 0) == tb.Hash(0, 0)) {
			t.Fatalf("iter %d: roots equal %v with %d differing leaves", iter, ta.Hash(0, 0) == tb.Hash(0, 0), len(want))
		}
	}
}

// An empty tree hashes to 0 everywhere, and so does a subtree with no
// records; a record's hash depends on its version and tombstone, not its
// value.
func TestTreeEmptyAndRecordHash(t *testing.T) {
	tr := antientropy.NewTree(antientropy.Arc{After: 1, Through: 1}, 10, nil)
	if tr.Hash(0, 0) != 0 || tr.Hash(10, 5) != 0 {
		t.Errorf("empty tree hashes to %x", tr.Hash(0, 0))
	}
	tr = antientropy.NewTree(antientropy.Arc{After: 0, Through: 1 << 20}, 4, []antientropy.Entry{{Token: 5, Hash: 99}})
	if tr.Hash(0, 0) == 0 || tr.Hash(4, 0) == 0 || tr.Hash(1, 1) != 0 || tr.Hash(4, 15) != 0 {
		t.Errorf("tree of one record in leaf 0: root %x leaf0 %x right %x leaf15 %x", tr.Hash(0, 0), tr.Hash(4, 0), tr.Hash(1, 1), tr.Hash(4, 15))
	}
	rec := storage.Record{Key: []byte("k"), Value: []byte("a"), Version: storage.Version{Timestamp: 10, Node: 1}}
	h := antientropy.RecordHash(rec)
	other := rec
	other.Value = []byte("b")
	if antientropy.RecordHash(other) != h {
		t.Error("RecordHash depends on the value")
	}
	for _, o := range []storage.Record{
		{Key: rec.Key, Version: storage.Version{Timestamp: 11, Node: 1}},
		{Key: rec.Key, Version: storage.Version{Timestamp: 10, Node: 2}},
		{Key: rec.Key, Version: rec.Version, Tombstone: true},
		{Key: []byte("k2"), Version: rec.Version},
	} {
		if antientropy.RecordHash(o) == h {
			t.Errorf("RecordHash(%+v) equals that of %+v", o, rec)
		}
	}
}

// Children lists every node the given number of levels down, in order.
func TestChildren(t *testing.T) {
	if got, want := antientropy.Children(1, 3, []uint32{0, 1}), []uint32{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("Children(1, 3, [0 1]) = %v; want %v", got, want)
	}
	if got, want := antientropy.Children(2, 3, []uint32{3}), []uint32{6, 7}; !slices.Equal(got, want) {
		t.Errorf("Children(2, 3, [3]) = %v; want %v", got, want)
	}
}
