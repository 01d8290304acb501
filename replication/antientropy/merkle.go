package antientropy

// Merkle trees over token ranges: the pure part of the merkle method. A
// tree summarizes one replica's records of one arc of the token ring; two
// replicas compare trees top down and exchange digests only for the leaves
// whose hashes differ. Nothing here does I/O.

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"

	"github.com/cespare/xxhash/v2"

	"github.com/adaptkv/adaptkv/storage"
)

// Entry is one record as a tree sees it: its ring token and RecordHash.
type Entry struct {
	Token, Hash uint64
}

// RecordHash is a record's contribution to a tree: the xxhash64 of its key,
// version and tombstone flag. Values are left out: two replicas that hold
// the same version of a key hold the same value (a version is written
// once), and hashing values would make building a tree read every value.
func RecordHash(rec storage.Record) uint64 {
	var d xxhash.Digest
	d.Reset()
	var buf [13]byte
	binary.BigEndian.PutUint64(buf[0:8], rec.Version.Timestamp)
	binary.BigEndian.PutUint32(buf[8:12], rec.Version.Node)
	if rec.Tombstone {
		buf[12] = 1
	}
	d.Write(buf[:])
	d.Write(rec.Key)
	return d.Sum64()
}

// Arc is the tokens t with After < t <= Through going clockwise round the
// ring, wrapping past 2^64-1 when After >= Through; After == Through is the
// whole ring (as ring.Range).
type Arc struct {
	After, Through uint64
}

// Contains reports whether token t is on the arc.
func (a Arc) Contains(t uint64) bool {
	if a.After < a.Through {
		return t > a.After && t <= a.Through
	}
	return t > a.After || t <= a.Through
}

// Leaf is the leaf of a tree of the given depth over a that holds token t
// (which must be on a): the arc is cut into 2^depth sub-arcs of equal width
// (within one token), numbered clockwise from After.
func (a Arc) Leaf(t uint64, depth int) uint32 {
	o := t - a.After - 1 // offset on the arc, 0-based
	if a.After == a.Through {
		if depth == 0 {
			return 0
		}
		return uint32(o >> (64 - depth))
	}
	span := a.Through - a.After // modulo 2^64: the arc's width
	hi, lo := bits.Mul64(o, 1<<depth)
	q, _ := bits.Div64(hi, lo, span) // hi < span because o < span
	return uint32(q)
}

// Tree is the Merkle tree of one replica's records on an arc, with 2^depth
// leaves. A leaf's hash covers the RecordHashes of its records in token
// order, an inner node's the hashes of its two children; an empty subtree
// hashes to 0, so that replicas agree on empty arcs without a record. Nodes
// are computed on demand from the sorted records, not stored: a tree costs
// 12 bytes a record and nothing per empty leaf. A Tree is immutable and safe
// for concurrent use.
type Tree struct {
	arc    Arc
	depth  int
	leaves []uint32 // leaf of each record on the arc, nondecreasing
	hashes []uint64 // the records' hashes, in the same order
}

// NewTree builds the tree of depth (0 to MaxMerkleDepth) over the entries on
// arc; entries off the arc are left out, and entries may come in any order.
func NewTree(arc Arc, depth int, entries []Entry) *Tree {
	type ent struct {
		off, hash uint64
	}
	es := make([]ent, 0, len(entries))
	for _, e := range entries {
		if arc.Contains(e.Token) {
			es = append(es, ent{off: e.Token - arc.After - 1, hash: e.Hash})
		}
	}
	// Offsets order the records clockwise from After: the leaves' order.
	slices.SortFunc(es, func(a, b ent) int {
		if c := cmp.Compare(a.off, b.off); c != 0 {
			return c
		}
		return cmp.Compare(a.hash, b.hash)
	})
	t := &Tree{arc: arc, depth: depth, leaves: make([]uint32, len(es)), hashes: make([]uint64, len(es))}
	for i, e := range es {
		t.leaves[i] = arc.Leaf(e.off+arc.After+1, depth)
		t.hashes[i] = e.hash
	}
	return t
}

// Depth is the level of the tree's leaves; the root is level 0.
func (t *Tree) Depth() int { return t.depth }

// Len is the number of records in the tree.
func (t *Tree) Len() int { return len(t.hashes) }

// span returns the records under node index of level: positions [i, j).
func (t *Tree) span(level int, index uint32) (int, int) {
	shift := t.depth - level
	first := uint64(index) << shift
	end := (uint64(index) + 1) << shift
	i := sort.Search(len(t.leaves), func(k int) bool { return uint64(t.leaves[k]) >= first })
	j := i + sort.Search(len(t.leaves)-i, func(k int) bool { return uint64(t.leaves[i+k]) >= end })
	return i, j
}

// Hash returns the hash of node index (0 to 2^level-1) at level (0 to
// Depth): 0 when no record is under it.
func (t *Tree) Hash(level int, index uint32) uint64 {
	i, j := t.span(level, index)
	return t.hash(level, index, i, j)
}

// hash is Hash for the node whose records are positions [i, j).
func (t *Tree) hash(level int, index uint32, i, j int) uint64 {
	if i == j {
		return 0
	}
	var buf [16]byte
	if level == t.depth {
		var d xxhash.Digest
		d.Reset()
		for _, h := range t.hashes[i:j] {
			binary.BigEndian.PutUint64(buf[:8], h)
			d.Write(buf[:8])
		}
		return d.Sum64()
	}
	// Split [i, j) at the first record of the right child.
	mid := uint64(2*index+1) << (t.depth - level - 1)
	m := i + sort.Search(j-i, func(k int) bool { return uint64(t.leaves[i+k]) >= mid })
	l := t.hash(level+1, 2*index, i, m)
	r := t.hash(level+1, 2*index+1, m, j)
	binary.BigEndian.PutUint64(buf[:8], l)
	binary.BigEndian.PutUint64(buf[8:], r)
	return xxhash.Sum64(buf[:])
}

// Children lists the nodes at level next (> level, at most Depth) under the
// given nodes of level, in order: what a comparison asks about after
// finding those nodes different.
func Children(level, next int, nodes []uint32) []uint32 {
	fan := uint32(1) << (next - level)
	out := make([]uint32, 0, len(nodes)*int(fan))
	for _, n := range nodes {
		for c := range fan {
			out = append(out, n*fan+c)
		}
	}
	return out
}

// Differing returns the positions in nodes (indexes at level) whose hash in
// t is not the corresponding one of hashes: what a replica answers when
// another sends it its hashes of those nodes.
func (t *Tree) Differing(level int, nodes []uint32, hashes []uint64) []uint32 {
	var out []uint32
	for k, n := range nodes {
		if t.Hash(level, n) != hashes[k] {
			out = append(out, uint32(k))
		}
	}
	return out
}

// Compare returns the leaves where a and b differ, in order, by the descent
// the merkle method runs between two replicas: the roots first, then the
// children step levels down of each node that differs, until the leaves.
// The trees must have the same arc and depth; step is at least 1.
func Compare(a, b *Tree, step int) []uint32 {
	level, nodes := 0, []uint32{0}
	for {
		var hashes []uint64
		for _, n := range nodes {
			hashes = append(hashes, a.Hash(level, n))
		}
		var diff []uint32
		for _, k := range b.Differing(level, nodes, hashes) {
			diff = append(diff, nodes[k])
		}
		if level == a.depth || len(diff) == 0 {
			return diff
		}
		next := min(level+step, a.depth)
		level, nodes = next, Children(level, next, diff)
	}
}
