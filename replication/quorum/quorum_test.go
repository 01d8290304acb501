package quorum

import (
	"errors"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		level   Level
		n, r, w int
		want    Policy
		wantErr bool
	}{
		{One, 3, 0, 0, Policy{One, 3, 1, 1}, false},
		{Quorum, 3, 0, 0, Policy{Quorum, 3, 2, 2}, false},
		{Quorum, 4, 0, 0, Policy{Quorum, 4, 3, 3}, false},
		{Quorum, 5, 0, 0, Policy{Quorum, 5, 3, 3}, false},
		{Quorum, 1, 0, 0, Policy{Quorum, 1, 1, 1}, false},
		{All, 3, 0, 0, Policy{All, 3, 3, 3}, false},
		{Custom, 5, 2, 4, Policy{Custom, 5, 2, 4}, false},
		{Custom, 3, 4, 1, Policy{}, true}, // R > N
		{Custom, 3, 1, 4, Policy{}, true}, // W > N
		{Custom, 3, 0, 1, Policy{}, true}, // R < 1
		{Default, 3, 0, 0, Policy{}, true},
		{One, 0, 0, 0, Policy{}, true},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.level, tt.n, tt.r, tt.w)
		if (err != nil) != tt.wantErr {
			t.Errorf("Resolve(%v, %d, %d, %d) error = %v; want error %v", tt.level, tt.n, tt.r, tt.w, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("Resolve(%v, %d, %d, %d) error = %v; want ErrInvalidPolicy", tt.level, tt.n, tt.r, tt.w, err)
		}
		if got != tt.want {
			t.Errorf("Resolve(%v, %d, %d, %d) = %v; want %v", tt.level, tt.n, tt.r, tt.w, got, tt.want)
		}
	}
}

// Quorum and All overlap for every N; One overlaps only when N is 1.
func TestOverlapping(t *testing.T) {
	for n := 1; n <= 9; n++ {
		for _, l := range []Level{Quorum, All} {
			p, err := Resolve(l, n, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Overlapping() {
				t.Errorf("%v not overlapping", p)
			}
		}
		p, _ := Resolve(One, n, 0, 0)
		if got, want := p.Overlapping(), n == 1; got != want {
			t.Errorf("%v.Overlapping() = %v; want %v", p, got, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]Level{"one": One, "QUORUM": Quorum, "all": All, "": Default} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("strong"); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("ParseLevel(strong) error = %v; want ErrInvalidPolicy", err)
	}
}

// Reference: Dynamo (SOSP '07) §4.5: a put succeeds once W replicas respond.
func TestTally(t *testing.T) {
	type answer struct {
		replica int
		ok      bool
	}
	tests := []struct {
		name        string
		need, total int
		answers     []answer
		want        []Verdict
	}{
		{"w2 of 3: two acks win, third silent", 2, 3,
			[]answer{{0, true}, {1, true}}, []Verdict{Pending, Won}},
		{"w2 of 3: two failures lose", 2, 3,
			[]answer{{0, false}, {1, false}}, []Verdict{Pending, Lost}},
		{"w2 of 3: mixed then win", 2, 3,
			[]answer{{0, false}, {1, true}, {2, true}}, []Verdict{Pending, Pending, Won}},
		{"duplicate ack from one replica is not a quorum", 2, 3,
			[]answer{{0, true}, {0, true}}, []Verdict{Pending, Pending}},
		{"all of 3: one failure loses", 3, 3,
			[]answer{{0, true}, {1, false}}, []Verdict{Pending, Lost}},
		{"one of 3: first ack wins", 1, 3,
			[]answer{{2, true}}, []Verdict{Won}},
		{"one of 3: needs all to fail to lose", 1, 3,
			[]answer{{0, false}, {1, false}, {2, false}}, []Verdict{Pending, Pending, Lost}},
		{"need clamped to 1", 0, 1,
			[]answer{{0, true}}, []Verdict{Won}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := NewTally(tt.need, tt.total)
			for i, a := range tt.answers {
				if got := tl.Record(a.replica, a.ok); got != tt.want[i] {
					t.Fatalf("after answer %d (%+v): verdict %v; want %v", i, a, got, tt.want[i])
				}
			}
		})
	}
}

// The verdict must not depend on the order answers arrive in: check every
// permutation of every outcome vector for N up to 5.
func TestTallyOrderIndependent(t *testing.T) {
	for n := 1; n <= 5; n++ {
		for need := 1; need <= n; need++ {
			for mask := 0; mask < 1<<n; mask++ {
				want := final(need, n, identity(n), mask)
				permute(identity(n), func(order []int) {
					if got := final(need, n, order, mask); got != want {
						t.Fatalf("need=%d n=%d mask=%b order=%v: %v; want %v", need, n, mask, order, got, want)
					}
				})
			}
		}
	}
}

func final(need, n int, order []int, mask int) Verdict {
	tl := NewTally(need, n)
	for _, i := range order {
		tl.Record(i, mask&(1<<i) != 0)
	}
	return tl.Verdict()
}

func identity(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func permute(a []int, f func([]int)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(a) {
			f(a)
			return
		}
		for i := k; i < len(a); i++ {
			a[k], a[i] = a[i], a[k]
			rec(k + 1)
			a[k], a[i] = a[i], a[k]
		}
	}
	rec(0)
}

func BenchmarkTally(b *testing.B) {
	for i := 0; i < b.N; i++ {
		tl := NewTally(2, 3)
		tl.Record(0, true)
		tl.Record(1, false)
		tl.Record(2, true)
	}
}
