package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"

	"github.com/cespare/xxhash/v2"
)

// balanceBound is the largest relative deviation from the fair share 1/Len
// that a member of a 3-, 5- or 10-member ring may own with DefaultVnodes.
// Measured for the IDs below: 3 members 0.91..1.06, 5 members 0.93..1.09,
// 10 members 0.91..1.16 of the fair share; over random ID sets the 99th
// percentile is 20% for 10 members (see DefaultVnodes). ±25% leaves margin
// for both, so renaming the test IDs should not make this test flaky.
const balanceBound = 0.25

const testKeys = 100_000

func nodes(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%d", i+1)}
	}
	return ms
}

func zonedNodes(n, zones int) []Member {
	ms := nodes(n)
	for i := range ms {
		ms[i].Zone = fmt.Sprintf("zone-%c", 'a'+i%zones)
	}
	return ms
}

// keys returns n deterministic pseudo-random keys.
func keys(n int) [][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	ks := make([][]byte, n)
	for i := range ks {
		ks[i] = fmt.Appendf(nil, "user:%016x", rng.Uint64())
	}
	return ks
}

func zoneOf(ms []Member) map[string]string {
	z := make(map[string]string, len(ms))
	for _, m := range ms {
		z[m.ID] = m.Zone
	}
	return z
}

// reference computes a preference list the slow, obvious way, independently
// of Ring's token array and bitsets: sort every vnode, find the first at or
// after token, list the distinct members of one lap, then apply the zone rule
// to that list.
func reference(members []Member, vnodes int, token uint64, n int) []string {
	if vnodes <= 0 {
		vnodes = DefaultVnodes
	}
	zone := map[string]string{}
	for _, m := range members {
		if z, ok := zone[m.ID]; !ok || m.Zone < z {
			zone[m.ID] = m.Zone
		}
	}
	type vn struct {
		t  uint64
		id string
	}
	var vs []vn
	zoned := false
	for id, z := range zone {
		zoned = zoned || z != ""
		for v := range vnodes {
			vs = append(vs, vn{vnodeToken(id, v), id})
		}
	}
	slices.SortFunc(vs, func(a, b vn) int {
		if a.t != b.t {
			if a.t < b.t {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		if a.id > b.id {
			return 1
		}
		return 0
	})
	n = min(n, len(zone))
	if n <= 0 {
		return nil
	}
	start := 0
	for i, v := range vs {
		if v.t >= token {
			start = i
			break
		} // none at or after token: start stays 0, the wrap-around
	}
	var seq []string
	seen := map[string]bool{}
	for i := range vs {
		id := vs[(start+i)%len(vs)].id
		if !seen[id] {
			seen[id] = true
			seq = append(seq, id)
		}
	}
	var out []string
	taken := map[string]bool{}
	if zoned {
		zonesUsed := map[string]bool{}
		for _, id := range seq {
			if len(out) == n {
				break
			}
			if !zonesUsed[zone[id]] {
				zonesUsed[zone[id]] = true
				taken[id] = true
				out = append(out, id)
			}
		}
	}
	for _, id := range seq {
		if len(out) == n {
			break
		}
		if !taken[id] {
			taken[id] = true
			out = append(out, id)
		}
	}
	return out
}

func checkList(t testing.TB, r *Ring, list []string, n int) {
	t.Helper()
	if want := min(max(n, 0), r.Len()); len(list) != want {
		t.Fatalf("len(list) = %d, want %d: %q", len(list), want, list)
	}
	seen := map[string]bool{}
	for _, id := range list {
		if seen[id] {
			t.Fatalf("duplicate %q in %q", id, list)
		}
		seen[id] = true
	}
}

func TestNew(t *testing.T) {
	ms := []Member{{ID: "c"}, {ID: "a", Zone: "z2"}, {ID: "b"}, {ID: "a", Zone: "z1"}, {ID: "c"}}
	r := New(ms, 0)
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (duplicates collapsed)", r.Len())
	}
	if r.Vnodes() != DefaultVnodes {
		t.Fatalf("Vnodes = %d, want DefaultVnodes", r.Vnodes())
	}
	want := []Member{{ID: "a", Zone: "z1"}, {ID: "b"}, {ID: "c"}}
	got := r.Members()
	if !slices.Equal(got, want) {
		t.Fatalf("Members = %v, want %v", got, want)
	}
	got[0].ID = "mutated"
	if r.Members()[0].ID != "a" {
		t.Fatal("Members returned the ring's own slice")
	}
	ms[0].ID = "mutated"
	if r.Members()[2].ID != "c" {
		t.Fatal("New kept the caller's slice")
	}
	if New(nodes(2), -5).Vnodes() != DefaultVnodes || New(nodes(2), 7).Vnodes() != 7 {
		t.Fatal("vnodes <= 0 must mean DefaultVnodes, others kept")
	}
	if got := len(New(nodes(4), 7).tokens); got != 28 {
		t.Fatalf("4 members x 7 vnodes gave %d tokens", got)
	}
}

func TestDeterminism(t *testing.T) {
	ms := zonedNodes(7, 3)
	base := New(ms, 64)
	rng := rand.New(rand.NewPCG(1, 2))
	ks := keys(2000)
	for trial := range 5 {
		perm := slices.Clone(ms)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		perm = append(perm, perm[trial]) // a duplicate must not matter either
		r := New(perm, 64)
		if !slices.Equal(r.tokens, base.tokens) || !slices.Equal(r.owners, base.owners) {
			t.Fatalf("trial %d: vnode layout depends on member order", trial)
		}
		for _, k := range ks {
			if a, b := base.PreferenceList("ks", k, 3), r.PreferenceList("ks", k, 3); !slices.Equal(a, b) {
				t.Fatalf("trial %d key %q: %q vs %q", trial, k, a, b)
			}
		}
	}
}

func TestPreferenceList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		n       int
		wantLen int
	}{
		{"empty ring", nil, 3, 0},
		{"n zero", nodes(5), 0, 0},
		{"n negative", nodes(5), -1, 0},
		{"single member", nodes(1), 3, 1},
		{"n one", nodes(5), 1, 1},
		{"n three", nodes(5), 3, 3},
		{"n equals len", nodes(5), 5, 5},
		{"n above len", nodes(5), 9, 5},
		{"n far above len", nodes(3), 1000, 3},
		{"zoned n above len", zonedNodes(4, 2), 9, 4},
		{"one zone", zonedNodes(4, 1), 3, 3},
		{"some zones empty", []Member{{ID: "a", Zone: "x"}, {ID: "b"}, {ID: "c", Zone: "x"}}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.members, 32)
			for _, k := range keys(200) {
				list := r.PreferenceList("ks", k, tc.n)
				if tc.wantLen == 0 && list != nil {
					t.Fatalf("got %q, want nil", list)
				}
				checkList(t, r, list, tc.n)
				if len(list) != tc.wantLen {
					t.Fatalf("len = %d, want %d", len(list), tc.wantLen)
				}
				if want := reference(tc.members, 32, Token("ks", k), tc.n); !slices.Equal(list, want) {
					t.Fatalf("key %q: got %q, reference %q", k, list, want)
				}
				app := r.AppendPreferenceList([]string{"keep"}, "ks", k, tc.n)
				if app[0] != "keep" || !slices.Equal(app[1:], list) {
					t.Fatalf("Append gave %q, want keep + %q", app, list)
				}
			}
		})
	}
}

func TestZeroRing(t *testing.T) {
	var r Ring
	if r.Len() != 0 || r.PreferenceList("ks", []byte("k"), 3) != nil ||
		r.PreferenceListAt(0, 1) != nil || len(r.Ownership()) != 0 || len(r.Members()) != 0 {
		t.Fatal("the zero Ring must behave as an empty ring")
	}
	if got := r.AppendPreferenceList(nil, "ks", []byte("k"), 3); got != nil {
		t.Fatalf("Append on empty ring = %q", got)
	}
}

func TestWrapAround(t *testing.T) {
	r := New(nodes(5), 16)
	first := r.ids[r.owners[0]]
	last := len(r.tokens) - 1
	for _, tc := range []struct {
		name    string
		token   uint64
		primary string
	}{
		{"zero", 0, first},
		{"at first vnode", r.tokens[0], first},
		{"just past last vnode", r.tokens[last] + 1, first},
		{"max token", math.MaxUint64, first},
		{"at last vnode", r.tokens[last], r.ids[r.owners[last]]},
		{"just past vnode 3", r.tokens[3] + 1, r.ids[r.owners[4]]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list := r.PreferenceListAt(tc.token, 5)
			if list[0] != tc.primary {
				t.Fatalf("primary = %q, want %q", list[0], tc.primary)
			}
			if want := reference(nodes(5), 16, tc.token, 5); !slices.Equal(list, want) {
				t.Fatalf("got %q, reference %q", list, want)
			}
		})
	}
	// From the last vnode the walk must continue at the first one.
	list := r.PreferenceListAt(r.tokens[last], 2)
	next := r.ids[r.owners[0]]
	for i := 0; next == list[0]; i++ {
		next = r.ids[r.owners[i]]
	}
	if list[1] != next {
		t.Fatalf("after the last vnode got %q, want %q (first vnodes wrap)", list[1], next)
	}
}

func TestToken(t *testing.T) {
	if got, want := Token("users", []byte("alice")), xxhash.Sum64String("users\x00alice"); got != want {
		t.Fatalf("Token = %x, want xxhash64(keyspace NUL key) = %x", got, want)
	}
	// Both sides of the stack-buffer cut-off must hash the same bytes.
	for _, size := range []int{0, 1, tokenBuf - 4, tokenBuf - 3, tokenBuf - 2, 1000} {
		key := make([]byte, size)
		for i := range key {
			key[i] = byte(i)
		}
		if got, want := Token("ks", key), xxhash.Sum64(append([]byte("ks\x00"), key...)); got != want {
			t.Fatalf("key of %d bytes: Token = %x, want %x", size, got, want)
		}
	}
	if Token("a", []byte("bc")) == Token("ab", []byte("c")) {
		t.Fatal("the separator must keep keyspace and key apart")
	}
	if Token("a", []byte("k")) == Token("b", []byte("k")) {
		t.Fatal("keyspaces must place the same key independently")
	}
	if Token("ks", nil) != Token("ks", []byte{}) {
		t.Fatal("nil and empty key differ")
	}
}

func TestAppendPreferenceListDoesNotAllocate(t *testing.T) {
	for _, r := range []*Ring{New(nodes(5), 0), New(nodes(100), 0), New(zonedNodes(9, 3), 0)} {
		key := []byte("user:42")
		buf := make([]string, 0, 8)
		allocs := testing.AllocsPerRun(1000, func() {
			buf = r.AppendPreferenceList(buf[:0], "ks", key, 3)
		})
		if allocs != 0 {
			t.Fatalf("%d members: %v allocs per call, want 0", r.Len(), allocs)
		}
	}
}

// Rings larger than the on-stack bitsets take the heap path; it must give
// the same answers.
func TestLargeRing(t *testing.T) {
	ms := zonedNodes(maxStackMembers+100, maxStackMembers+50)
	r := New(ms, 2)
	for _, k := range keys(20) {
		tok := Token("ks", k)
		for _, n := range []int{3, len(ms)} {
			list := r.PreferenceListAt(tok, n)
			checkList(t, r, list, n)
			if n == 3 {
				if want := reference(ms, 2, tok, n); !slices.Equal(list, want) {
					t.Fatalf("got %q, reference %q", list, want)
				}
			}
		}
	}
}

func TestOwnership(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		vnodes  int
	}{
		{"one member", nodes(1), 0},
		{"one member one vnode", nodes(1), 1},
		{"two members one vnode", nodes(2), 1},
		{"five", nodes(5), 0},
		{"zoned", zonedNodes(6, 3), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.members, tc.vnodes)
			own := r.Ownership()
			if len(own) != r.Len() {
				t.Fatalf("Ownership has %d members, want %d", len(own), r.Len())
			}
			sum := 0.0
			for _, f := range own {
				if f < 0 || f > 1 {
					t.Fatalf("fraction %v out of [0,1]", f)
				}
				sum += f
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Fatalf("fractions sum to %v, want 1", sum)
			}
			// Ownership is exact; sampled primaries must agree with it
			// within sampling error (sd <= 0.5/sqrt(20k) ~ 0.0035).
			const samples = 20000
			count := map[string]int{}
			for _, k := range keys(samples) {
				count[r.PreferenceList("ks", k, 1)[0]]++
			}
			for id, f := range own {
				if got := float64(count[id]) / samples; math.Abs(got-f) > 0.015 {
					t.Fatalf("%s: Ownership %.4f, sampled %.4f", id, f, got)
				}
			}
		})
	}
}

// Reference: Dynamo (SOSP '07) §4.2 — virtual nodes spread each member's
// load over many small ranges, so ownership approaches 1/N.
func TestBalance(t *testing.T) {
	ks := keys(testKeys)
	for _, n := range []int{3, 5, 10} {
		t.Run(fmt.Sprintf("members=%d", n), func(t *testing.T) {
			r := New(nodes(n), 0)
			fair := 1 / float64(n)
			lo, hi := math.Inf(1), math.Inf(-1)
			for id, f := range r.Ownership() {
				rel := f / fair
				lo, hi = min(lo, rel), max(hi, rel)
				if math.Abs(rel-1) > balanceBound {
					t.Errorf("%s owns %.4f = %.3f of fair share, want within ±%.0f%%", id, f, rel, balanceBound*100)
				}
			}
			count := map[string]int{}
			for _, k := range ks {
				count[r.PreferenceList("ks", k, 1)[0]]++
			}
			klo, khi := math.Inf(1), math.Inf(-1)
			for _, m := range r.Members() {
				rel := float64(count[m.ID]) / testKeys / fair
				klo, khi = min(klo, rel), max(khi, rel)
				if math.Abs(rel-1) > balanceBound {
					t.Errorf("%s is primary of %d keys = %.3f of fair share, want within ±%.0f%%", m.ID, count[m.ID], rel, balanceBound*100)
				}
			}
			t.Logf("ownership %.3f..%.3f of fair share; %d keys' primaries %.3f..%.3f", lo, hi, testKeys, klo, khi)
		})
	}
}

// Reference: Dynamo (SOSP '07) §4.2 — a joining node takes keys only for
// itself; no key moves between old members.
func TestMinimalMovement(t *testing.T) {
	const newID = "node-6"
	before := New(nodes(5), 0)
	after := New(nodes(6), 0)
	ks := keys(testKeys)

	t.Run("primary", func(t *testing.T) {
		moved := 0
		from := map[string]int{}
		for _, k := range ks {
			a, b := before.PreferenceList("ks", k, 1)[0], after.PreferenceList("ks", k, 1)[0]
			if a == b {
				continue
			}
			if b != newID {
				t.Fatalf("key %q moved %s -> %s, not to the new member", k, a, b)
			}
			moved++
			from[a]++
		}
		frac := float64(moved) / testKeys
		t.Logf("%.4f of keys moved (ideal 1/6 = %.4f); taken from %v", frac, 1.0/6, from)
		if lo, hi := (1-balanceBound)/6, (1+balanceBound)/6; frac < lo || frac > hi {
			t.Fatalf("moved fraction %.4f, want in [%.4f, %.4f]", frac, lo, hi)
		}
		// The new member's share comes from everyone, not from one neighbour.
		for _, m := range before.Members() {
			if from[m.ID] == 0 {
				t.Fatalf("no key moved from %s", m.ID)
			}
		}
	})

	t.Run("n=3", func(t *testing.T) {
		changed := 0
		for _, k := range ks {
			a, b := before.PreferenceList("ks", k, 3), after.PreferenceList("ks", k, 3)
			if slices.Equal(a, b) {
				continue
			}
			changed++
			// The only change allowed: the new member is inserted and the
			// old last replica drops off; the others keep their order.
			i := slices.Index(b, newID)
			if i < 0 {
				t.Fatalf("key %q: list changed %q -> %q without the new member", k, a, b)
			}
			if rest := slices.Delete(slices.Clone(b), i, i+1); !slices.Equal(rest, a[:2]) {
				t.Fatalf("key %q: list changed %q -> %q beyond inserting %s", k, a, b, newID)
			}
		}
		// About 3/6 of the lists gain the new member.
		frac := float64(changed) / testKeys
		t.Logf("%.4f of n=3 lists changed (ideal 3/6)", frac)
		if frac < 0.5*(1-balanceBound) || frac > 0.5*(1+balanceBound) {
			t.Fatalf("changed fraction %.4f, want about 0.5", frac)
		}
	})

	t.Run("zoned n=3", func(t *testing.T) {
		// Zone-aware lists reorder, but as sets they still change only by
		// the new member replacing one old replica.
		before := New(zonedNodes(6, 3), 0)
		grown := append(zonedNodes(6, 3), Member{ID: "node-7", Zone: "zone-a"})
		after := New(grown, 0)
		for _, k := range ks[:20000] {
			a, b := before.PreferenceList("ks", k, 3), after.PreferenceList("ks", k, 3)
			gone := 0
			for _, id := range a {
				if !slices.Contains(b, id) {
					gone++
				}
			}
			for _, id := range b {
				if !slices.Contains(a, id) && id != "node-7" {
					t.Fatalf("key %q: %q -> %q added old member %s", k, a, b, id)
				}
			}
			if gone > 1 {
				t.Fatalf("key %q: %q -> %q lost %d replicas", k, a, b, gone)
			}
		}
	})
}

func TestZones(t *testing.T) {
	ks := keys(20000)
	for _, tc := range []struct {
		name           string
		members, zones int
		n              int
		wantZones      int // distinct zones in every list
	}{
		{"6 members 3 zones n=3", 6, 3, 3, 3},
		{"4 members 2 zones n=3", 4, 2, 3, 2},
		{"9 members 3 zones n=2", 9, 3, 2, 2},
		{"5 members 5 zones n=3", 5, 5, 3, 3},
		{"3 members 2 zones n=3", 3, 2, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := zonedNodes(tc.members, tc.zones)
			zone := zoneOf(ms)
			r := New(ms, 0)
			for _, k := range ks {
				list := r.PreferenceList("ks", k, tc.n)
				checkList(t, r, list, tc.n)
				zs := map[string]bool{}
				for i, id := range list {
					// Zone-distinct members come first: a repeated zone
					// may appear only after every zone has appeared.
					if zs[zone[id]] && len(zs) < min(tc.zones, tc.n) {
						t.Fatalf("key %q: %q repeats zone %s at %d before all zones used", k, list, zone[id], i)
					}
					zs[zone[id]] = true
				}
				if len(zs) != tc.wantZones {
					t.Fatalf("key %q: %q spans %d zones, want %d", k, list, len(zs), tc.wantZones)
				}
			}
		})
	}
}

func TestQuickMatchesReference(t *testing.T) {
	f := func(seed uint64, members, vnodes, zones, n uint8) bool {
		ms, vn, nn := fuzzMembers(members, vnodes, zones, n)
		r := New(ms, vn)
		rng := rand.New(rand.NewPCG(seed, 0))
		for range 8 {
			tok := rng.Uint64()
			list := r.PreferenceListAt(tok, nn)
			if len(list) != min(max(nn, 0), r.Len()) || hasDup(list) {
				return false
			}
			if !slices.Equal(list, reference(ms, vn, tok, nn)) {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 300}); err != nil {
		t.Fatal(err)
	}
}

func hasDup(list []string) bool {
	s := slices.Clone(list)
	slices.Sort(s)
	return len(slices.Compact(s)) != len(list)
}

// fuzzMembers turns small fuzz numbers into a ring shape small enough to
// check against reference quickly.
func fuzzMembers(members, vnodes, zones, n uint8) ([]Member, int, int) {
	m := int(members % 24)
	ms := make([]Member, m)
	for i := range ms {
		ms[i].ID = fmt.Sprintf("m%d", i%max(1, m-int(members)%3)) // some duplicate IDs
		if zones%5 != 0 {
			ms[i].Zone = fmt.Sprintf("z%d", i%int(zones%5))
		}
	}
	return ms, int(vnodes % 20), int(n%30) - 2
}

func FuzzPreferenceList(f *testing.F) {
	f.Add(uint8(5), uint8(8), uint8(0), uint8(5), []byte("k"))
	f.Add(uint8(6), uint8(3), uint8(3), uint8(5), []byte("user:1"))
	f.Add(uint8(0), uint8(1), uint8(1), uint8(4), []byte{})
	f.Add(uint8(23), uint8(19), uint8(4), uint8(29), []byte{0, 0, 1})
	f.Add(uint8(1), uint8(0), uint8(2), uint8(0), []byte("x"))
	f.Fuzz(func(t *testing.T, members, vnodes, zones, n uint8, key []byte) {
		ms, vn, nn := fuzzMembers(members, vnodes, zones, n)
		r := New(ms, vn)
		list := r.PreferenceList("ks", key, nn)
		checkList(t, r, list, nn)
		if want := reference(ms, vn, Token("ks", key), nn); !slices.Equal(list, want) {
			t.Fatalf("got %q, reference %q", list, want)
		}
	})
}

func BenchmarkPreferenceList(b *testing.B) {
	for _, bc := range []struct {
		members, zones int
	}{{5, 0}, {100, 0}, {6, 3}, {99, 3}} {
		b.Run(fmt.Sprintf("members=%d/zones=%d", bc.members, bc.zones), func(b *testing.B) {
			ms := nodes(bc.members)
			if bc.zones > 0 {
				ms = zonedNodes(bc.members, bc.zones)
			}
			r := New(ms, 0)
			ks := keys(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_ = r.PreferenceList("ks", ks[i&1023], 3)
				i++
			}
		})
	}
}

func BenchmarkAppendPreferenceList(b *testing.B) {
	for _, members := range []int{5, 100} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			r := New(nodes(members), 0)
			ks := keys(1024)
			buf := make([]string, 0, 3)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				buf = r.AppendPreferenceList(buf[:0], "ks", ks[i&1023], 3)
				i++
			}
		})
	}
}

func BenchmarkToken(b *testing.B) {
	for _, size := range []int{16, 256} {
		b.Run(fmt.Sprintf("key=%dB", size), func(b *testing.B) {
			key := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				_ = Token("users", key)
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, members := range []int{5, 100} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			ms := nodes(members)
			b.ReportAllocs()
			for b.Loop() {
				_ = New(ms, 0)
			}
		})
	}
}

// Ranges cover the token space exactly once, each with the preference list
// of every token in it, for plain and zoned rings, with the vnodes' own
// tokens, their neighbours and random tokens as probes.
func TestRanges(t *testing.T) {
	tests := []struct {
		name    string
		members []Member
		vnodes  int
		n       int
	}{
		{"one member", nodes(1), 8, 3},
		{"one vnode", nodes(1), 1, 1},
		{"five members n=3", nodes(5), 16, 3},
		{"five members n=5", nodes(5), 16, 5},
		{"zoned", zonedNodes(6, 3), 16, 3},
		{"default vnodes", nodes(5), 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.members, tt.vnodes)
			ranges := r.Ranges(tt.n)
			if len(ranges) == 0 {
				t.Fatal("no ranges")
			}
			probes := []uint64{0, math.MaxUint64}
			for _, tok := range r.tokens {
				probes = append(probes, tok, tok-1, tok+1)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for range 2000 {
				probes = append(probes, rng.Uint64())
			}
			for _, tok := range probes {
				in := 0
				for _, g := range ranges {
					if g.Contains(tok) {
						in++
						if want := r.PreferenceListAt(tok, tt.n); !slices.Equal(g.Replicas, want) {
							t.Fatalf("token %#x in range (%#x, %#x] with replicas %v; PreferenceListAt says %v", tok, g.After, g.Through, g.Replicas, want)
						}
					}
				}
				if in != 1 {
					t.Fatalf("token %#x is in %d ranges; want exactly 1", tok, in)
				}
			}
			for i := 1; i < len(ranges); i++ {
				if slices.Equal(ranges[i-1].Replicas, ranges[i].Replicas) {
					t.Errorf("neighbouring ranges %d and %d have the same replicas %v: not merged", i-1, i, ranges[i].Replicas)
				}
			}
		})
	}
	if got := (&Ring{}).Ranges(3); got != nil {
		t.Errorf("empty ring: %v", got)
	}
}
