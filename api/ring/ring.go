package ring

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultVnodes is the number of vnodes per member used when New is given
// vnodes <= 0.
//
// Balance was measured with Ownership over 300 random member-ID sets per
// cell. The numbers are the worst member's deviation from its fair share
// 1/N, relative, at the median and the 99th percentile of ID sets:
//
//	vnodes   N=3 (p50/p99)   N=5           N=10          N=100
//	   64    12% / 29%       16% / 33%     22% / 42%     34% / 57%
//	  128     8% / 20%       11% / 24%     16% / 32%     24% / 38%
//	  256     6% / 14%        8% / 17%     11% / 20%     17% / 26%
//	  512     4% / 10%        6% / 13%      8% / 13%     12% / 17%
//
// Why not smaller? The spread shrinks only as 1/sqrt(vnodes); at 128 one ID
// set in a hundred leaves a 10-member ring with a node 32% over its share,
// and the most loaded node sets the cluster's capacity. 256 keeps 3 to 10
// members within ±25% (the bound the tests and the Ring doc state) with
// margin at the 99th percentile.
//
// Why not larger? Doubling to 512 buys only 4 to 7 points at p99 but doubles
// what every vnode costs: 12 bytes of ring (3 MB at 1000 members), New's
// sort (about 3 ms at 100 members and 256 vnodes), and above all the number
// of token ranges a joining or leaving member streams and repair compares,
// which is the cost Dynamo §6.2 found made random tokens slow to bootstrap.
// Deployments that need tighter balance can pass a larger count to New.
const DefaultVnodes = 256

// Member is one node placed on the ring.
type Member struct {
	// ID names the member; it alone decides where the member's vnodes are,
	// so it must be stable across restarts and address changes.
	ID string
	// Zone is the failure domain (rack, availability zone). Empty in every
	// member means the ring ignores zones.
	Zone string
}

// Ring is an immutable consistent-hash ring. Build it with New; the zero
// value is an empty ring.
//
// Balance bound: with DefaultVnodes, every member of a 3-, 5- or 10-member
// ring owns within ±25% of its fair share 1/Len of the token space. It is a
// statistical bound, since tokens are hashes of member IDs: measured over
// random ID sets it holds for more than 99% of them (see DefaultVnodes), and
// TestBalance checks it for a fixed set.
type Ring struct {
	members []Member // sorted by ID, distinct
	ids     []string // ids[i] == members[i].ID, so the hot path copies only string headers
	vnodes  int

	// tokens is sorted ascending; owners[i] is the index in members of the
	// member that owns tokens[i]. Equal tokens are ordered by member ID, so
	// a collision resolves the same way in every ring that holds both.
	tokens []uint64
	owners []int32

	// zoneOf[i] is the zone index of members[i]; zones is the number of
	// distinct zones, 0 when no member has a zone.
	zoneOf []int32
	zones  int
}

// New builds a ring of members with vnodes points each. The order of members
// does not matter. Members with the same ID are collapsed into one; if their
// zones differ the lexically smallest zone wins, so the result still does
// not depend on order. vnodes <= 0 means DefaultVnodes.
func New(members []Member, vnodes int) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVnodes
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int {
		if c := cmp.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return cmp.Compare(a.Zone, b.Zone)
	})
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	ms = slices.Clip(ms)

	r := &Ring{members: ms, vnodes: vnodes}
	if len(ms) == 0 {
		return r
	}
	if len(ms) > math.MaxInt32 {
		panic("ring: too many members")
	}

	r.ids = make([]string, len(ms))
	zoned := false
	for i, m := range ms {
		r.ids[i] = m.ID
		zoned = zoned || m.Zone != ""
	}
	if zoned {
		names := make([]string, 0, len(ms))
		for _, m := range ms {
			names = append(names, m.Zone)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		r.zones = len(names)
		r.zoneOf = make([]int32, len(ms))
		for i, m := range ms {
			z, _ := slices.BinarySearch(names, m.Zone)
			r.zoneOf[i] = int32(z)
		}
	}

	type vnode struct {
		token uint64
		owner int32
	}
	vs := make([]vnode, 0, len(ms)*vnodes)
	for i, m := range ms {
		for v := range vnodes {
			vs = append(vs, vnode{vnodeToken(m.ID, v), int32(i)})
		}
	}
	// Owner indices follow ID order, so breaking ties by owner is breaking
	// them by ID.
	slices.SortFunc(vs, func(a, b vnode) int {
		if c := cmp.Compare(a.token, b.token); c != 0 {
			return c
		}
		return cmp.Compare(a.owner, b.owner)
	})
	r.tokens = make([]uint64, len(vs))
	r.owners = make([]int32, len(vs))
	for i, v := range vs {
		r.tokens[i] = v.token
		r.owners[i] = v.owner
	}
	return r
}

// vnodeToken places vnode v of member id. The suffix has a fixed length, so
// distinct (id, v) pairs hash distinct byte strings even if id contains NUL.
func vnodeToken(id string, v int) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.WriteString(id)
	var suffix [9]byte
	binary.BigEndian.PutUint64(suffix[1:], uint64(v))
	d.Write(suffix[:])
	return d.Sum64()
}

// Token is the place of key on the ring: the xxhash64 of keyspace, a NUL
// byte and key. The separator keeps ("a", "bc") and ("ab", "c") apart, which
// is why keyspace names must not contain NUL. Callers that look up several
// rings, or log placement, can compute it once and use PreferenceListAt.
func Token(keyspace string, key []byte) uint64 {
	// Joining typical keys in a stack buffer for the one-shot Sum64 saves
	// about a fifth of the streaming Digest's cost (23 vs 28 ns for a 16-byte
	// key); the copy stalls store forwarding, or it would save more.
	if len(keyspace)+1+len(key) <= tokenBuf {
		var buf [tokenBuf]byte
		n := copy(buf[:], keyspace)
		n++ // buf[n-1] is the NUL separator, already zero
		n += copy(buf[n:], key)
		return xxhash.Sum64(buf[:n])
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(keyspace)
	d.Write([]byte{0})
	d.Write(key)
	return d.Sum64()
}

// tokenBuf is the longest keyspace+NUL+key joined on the stack by Token;
// longer ones are streamed, where the copy would no longer pay off.
const tokenBuf = 128

// Members returns the members sorted by ID. The slice is a copy.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Len is the number of distinct members.
func (r *Ring) Len() int { return len(r.members) }

// Vnodes is the number of vnodes per member.
func (r *Ring) Vnodes() int { return r.vnodes }

// PreferenceList returns the IDs of the min(n, Len()) members that store key,
// in preference order: the first is the primary (coordinator). A larger n is
// not an error here because only the caller knows whether fewer replicas
// than asked is acceptable. It returns nil for an empty ring or n <= 0.
func (r *Ring) PreferenceList(keyspace string, key []byte, n int) []string {
	return r.PreferenceListAt(Token(keyspace, key), n)
}

// PreferenceListAt is PreferenceList for a token computed by Token.
func (r *Ring) PreferenceListAt(token uint64, n int) []string {
	n = min(n, len(r.members))
	if n <= 0 {
		return nil
	}
	return r.appendAt(make([]string, 0, n), token, n)
}

// AppendPreferenceList appends the preference list of key to dst and returns
// the extended slice. Given a dst with room for n more IDs it does not
// allocate (for rings of up to 1024 members), so the request path should use
// it with a reused buffer. n <= 0 or an empty ring leaves dst unchanged.
func (r *Ring) AppendPreferenceList(dst []string, keyspace string, key []byte, n int) []string {
	n = min(n, len(r.members))
	if n <= 0 {
		return dst
	}
	return r.appendAt(dst, Token(keyspace, key), n)
}

// maxStackMembers bounds the rings whose "already taken" sets fit in a
// fixed-size array on the stack; larger rings allocate one bitset per lookup.
// At 1024 each set is 128 bytes to zero per lookup, which measured no slower
// than 256; past it, clusters are rare enough that an allocation is fine.
const maxStackMembers = 1024

// appendAt appends the first n distinct members walking clockwise from
// token, zone-distinct ones first. 0 < n <= Len.
func (r *Ring) appendAt(dst []string, token uint64, n int) []string {
	// Bitsets rather than scanning dst: when n approaches Len the walk may
	// visit most vnodes, and a scan per vnode would make that quadratic.
	var takenBuf, zoneBuf [maxStackMembers / 64]uint64
	taken := takenBuf[:]
	if words := (len(r.members) + 63) / 64; words > len(takenBuf) {
		taken = make([]uint64, words)
	}

	start, _ := slices.BinarySearch(r.tokens, token)
	if start == len(r.tokens) {
		start = 0 // past the last vnode: wrap to the first
	}
	total := len(r.tokens)
	got := 0

	// With one zone the zone pass would take only the first member, which
	// the plain walk takes anyway.
	if r.zones > 1 {
		zoneTaken := zoneBuf[:]
		if words := (r.zones + 63) / 64; words > len(zoneBuf) {
			zoneTaken = make([]uint64, words)
		}
		zonesGot := 0
		for i, j := 0, start; i < total && got < n && zonesGot < r.zones; i, j = i+1, j+1 {
			if j == total {
				j = 0
			}
			m := r.owners[j]
			z := r.zoneOf[m]
			if testBit(zoneTaken, z) {
				continue
			}
			setBit(zoneTaken, z)
			setBit(taken, m)
			dst = append(dst, r.ids[m])
			got++
			zonesGot++
		}
	}

	// Every member has at least one vnode, so one lap always finds n <= Len
	// distinct members.
	for i, j := 0, start; i < total && got < n; i, j = i+1, j+1 {
		if j == total {
			j = 0
		}
		m := r.owners[j]
		if testBit(taken, m) {
			continue
		}
		setBit(taken, m)
		dst = append(dst, r.ids[m])
		got++
	}
	return dst
}

func testBit(set []uint64, i int32) bool { return set[i>>6]&(1<<(uint(i)&63)) != 0 }
func setBit(set []uint64, i int32)       { set[i>>6] |= 1 << (uint(i) & 63) }

// Ownership returns, for each member ID, the fraction of the token space for
// which that member is first in the preference list. The fractions sum to 1
// (up to float rounding). It measures balance exactly, where sampling keys
// would only estimate it; an empty ring returns an empty map.
func (r *Ring) Ownership() map[string]float64 {
	own := make(map[string]float64, len(r.members))
	if len(r.members) == 0 {
		return own
	}
	// A key maps to the first vnode at or after its token, so vnode i owns
	// the arc (tokens[i-1], tokens[i]] and vnode 0 also owns the wrap-around
	// arc (tokens[last], 2^64). Arcs are summed in float64: the relative
	// rounding error is ~1e-16 per vnode, far below any balance of interest,
	// and it avoids overflowing uint64 for a member owning nearly everything.
	const space = 1 << 64
	last := len(r.tokens) - 1
	arcs := make([]float64, len(r.members))
	arcs[r.owners[0]] = space - float64(r.tokens[last]-r.tokens[0])
	for i := 1; i <= last; i++ {
		arcs[r.owners[i]] += float64(r.tokens[i] - r.tokens[i-1])
	}
	for i, a := range arcs {
		own[r.ids[i]] = a / space
	}
	return own
}

// Range is an arc of the token space whose keys all have the same
// preference list. A token t is in the range when it lies on the arc that
// runs clockwise from After (exclusive) to Through (inclusive); the arc
// wraps past 2^64-1 when After >= Through, and a ring of one vnode has a
// single range covering every token (After == Through).
type Range struct {
	After, Through uint64
	// Replicas is the preference list of every key in the range, as
	// PreferenceList returns it for the n passed to Ranges.
	Replicas []string
}

// Contains reports whether token t is in the range.
func (g Range) Contains(t uint64) bool {
	if g.After < g.Through {
		return t > g.After && t <= g.Through
	}
	return t > g.After || t <= g.Through
}

// Ranges returns the ring's token ranges with their preference lists of n
// members, in token order, each arc between consecutive vnodes merged with
// its neighbours while their preference lists are equal. Together they cover
// the token space exactly once, so a caller can check that every key has
// what it needs (a quorum of answering replicas, say) without knowing the
// keys. It costs one preference-list lookup per vnode; callers on a hot path
// should keep the result for as long as they keep the ring. It returns nil
// for an empty ring or n <= 0.
func (r *Ring) Ranges(n int) []Range {
	n = min(n, len(r.members))
	if n <= 0 {
		return nil
	}
	total := len(r.tokens)
	var out []Range
	buf := make([]string, 0, n)
	for i := range total {
		// A key maps to the first vnode at or after its token, so vnode i
		// serves the arc (tokens[i-1], tokens[i]], vnode 0 the wrapping one.
		prev := r.tokens[(i+total-1)%total]
		if prev == r.tokens[i] && total > 1 {
			continue // a token collision: an empty arc
		}
		buf = r.appendAt(buf[:0], r.tokens[i], n)
		if k := len(out); k > 0 && slices.Equal(out[k-1].Replicas, buf) {
			out[k-1].Through = r.tokens[i]
			continue
		}
		out = append(out, Range{After: prev, Through: r.tokens[i], Replicas: slices.Clone(buf)})
	}
	// The first and last ranges meet across the wrap; merge them when they
	// agree (unless they are one range already).
	if k := len(out); k > 1 && slices.Equal(out[0].Replicas, out[k-1].Replicas) {
		out[0].After = out[k-1].After
		out = out[:k-1]
	}
	return out
}
