package membership

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// partNet is a simulated network between in-process members: each gossip
// address is on a side, and traffic between different sides is dropped.
type partNet struct {
	mu   sync.Mutex
	side map[string]int // gossip address -> side; absent or 0 means whole
}

func (p *partNet) cut(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, b := p.side[from], p.side[to]
	return a != 0 && b != 0 && a != b
}

func (p *partNet) set(side map[string]int) {
	p.mu.Lock()
	p.side = side
	p.mu.Unlock()
}

// startCut starts a member on the simulated network.
func startCut(t *testing.T, id string, pn *partNet) *Membership {
	t.Helper()
	m, err := Start(Config{Meta: Meta{ID: id, GRPCAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"},
		BindAddr: "127.0.0.1:0", Local: true, cut: pn.cut})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// aliveCount is how many members m sees alive.
func aliveCount(m *Membership) int {
	n := 0
	for _, mem := range m.View().Members {
		if mem.State == Alive {
			n++
		}
	}
	return n
}

// TestRejoinAfterPartition: five members split 2 | 3 until each side has
// declared the other dead and the news has stopped spreading (memberlist
// then sends nothing across: it gossips only pending broadcasts, and
// probes and exchanges state only with members it thinks alive), then the
// network heals. Every member must see all five alive again within 5 s
// of the heal, in every trial.
func TestRejoinAfterPartition(t *testing.T) {
	pn := &partNet{}
	ids := []string{"m1", "m2", "m3", "m4", "m5"}
	ms := make([]*Membership, len(ids))
	for i, id := range ids {
		ms[i] = startCut(t, id, pn)
	}
	for _, m := range ms[1:] {
		join(t, m, ms[0].Addr())
	}
	whole := func(v *View) bool { return aliveCountView(v) == len(ids) }
	for _, m := range ms {
		waitView(t, m, "all five alive", whole)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var took []time.Duration
	for trial := range 2 {
		perm := rng.Perm(len(ids))
		side := map[string]int{}
		for k, i := range perm {
			side[ms[i].Addr()] = 1 + min(k/2, 1) // two on side 1, three on side 2
		}
		pn.set(side)
		for _, m := range ms {
			own := side[m.Addr()]
			waitView(t, m, fmt.Sprintf("trial %d: the other side dead", trial), func(v *View) bool {
				return aliveCountView(v) == 2 && own == 1 || aliveCountView(v) == 3 && own == 2
			})
		}
		// Let the death broadcasts run out before healing (each is sent
		// twice, one send every 100 ms).
		time.Sleep(time.Second)
		pn.set(nil)
		healed := time.Now()
		for !allWhole(ms) {
			if time.Since(healed) > 5*time.Second {
				var seen []string
				for _, m := range ms {
					seen = append(seen, fmt.Sprintf("%s sees %d alive", m.cfg.Meta.ID, aliveCount(m)))
				}
				t.Fatalf("trial %d: cluster not re-formed 5s after the heal: %v", trial, seen)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = append(took, time.Since(healed))
	}
	slices.Sort(took)
	t.Logf("re-formed after the heal in %v", took)
}

// join joins seed, trying a few times: a loaded machine can miss
// memberlist's 1 s TCP timeout.
func join(t *testing.T, m *Membership, seed string) {
	t.Helper()
	var err error
	for range 5 {
		if _, err = m.Join([]string{seed}); err == nil {
			return
		}
	}
	t.Fatal(err)
}

func aliveCountView(v *View) int {
	n := 0
	for _, mem := range v.Members {
		if mem.State == Alive {
			n++
		}
	}
	return n
}

func allWhole(ms []*Membership) bool {
	for _, m := range ms {
		if aliveCount(m) != len(ms) {
			return false
		}
	}
	return true
}

// TestReconnectTargets: which addresses one reconnect round joins.
func TestReconnectTargets(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	mem := func(id string, st State, ago time.Duration) *Member {
		return &Member{Meta: Meta{ID: id}, GossipAddr: id + ":7946", State: st, Since: now.Add(-ago)}
	}
	members := func(ms ...*Member) map[string]*Member {
		out := map[string]*Member{}
		for _, m := range ms {
			out[m.ID] = m
		}
		return out
	}
	identity := func(n int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		return p
	}
	reverse := func(n int) []int {
		p := identity(n)
		slices.Reverse(p)
		return p
	}
	self := mem("a", Alive, time.Minute)
	for _, tc := range []struct {
		name    string
		members map[string]*Member
		seeds   []string
		perm    func(int) []int
		want    []string
	}{
		{"all alive: nothing to do", members(self, mem("b", Alive, 0), mem("c", Alive, 0)),
			[]string{"b:7946", "s:1"}, identity, nil},
		{"dead members, then the seeds that are not alive members", members(self, mem("b", Dead, time.Second), mem("c", Alive, 0)),
			[]string{"a:7946", "b:7946", "c:7946", "s:1"}, identity, []string{"b:7946", "s:1"}},
		{"left members are forgotten", members(self, mem("b", Left, time.Second), mem("c", Alive, 0)),
			[]string{"s:1"}, identity, nil},
		{"dead past the reconnect timeout: given up", members(self, mem("b", Dead, 73*time.Hour), mem("c", Alive, 0)),
			[]string{"b:7946", "s:1"}, identity, nil},
		{"alone but for members given up on: the seeds", members(self, mem("b", Dead, 73*time.Hour)),
			[]string{"s:1"}, identity, []string{"s:1"}},
		{"at most fanout dead members, in perm's order", members(self, mem("b", Dead, 0), mem("c", Dead, 0), mem("d", Dead, 0), mem("e", Dead, 0)),
			nil, reverse, []string{"e:7946", "d:7946", "c:7946"}},
		{"alone and knowing nobody: the seeds", members(self),
			[]string{"a:7946", "s:1", "s:2"}, identity, []string{"s:1", "s:2"}},
		{"not even itself in the map yet: the seeds", members(),
			[]string{"s:1"}, identity, []string{"s:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := reconnectTargets(tc.members, "a", "a:7946", tc.seeds, now, DefaultReconnectTimeout, 3, tc.perm)
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets %v, want %v", got, tc.want)
			}
		})
	}
}
