package membership

import (
	"testing"
	"time"
)

func start(t *testing.T, id string) *Membership {
	t.Helper()
	m, err := Start(Config{Meta: Meta{ID: id, GRPCAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Zone: "z-" + id}, BindAddr: "127.0.0.1:0", Local: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func waitView(t *testing.T, m *Membership, what string, ok func(*View) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok(m.View()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; view: %+v", what, m.View().Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A failed member stays on the ring (its keys keep their place and get
// hints); a member that leaves gracefully is taken off it.
func TestFailedStaysLeftGoes(t *testing.T) {
	// Four members, so that two are left to confirm b's failure quickly
	// (memberlist waits longer when no other member confirms a suspicion).
	a, b, c, d := start(t, "a"), start(t, "b"), start(t, "c"), start(t, "d")
	for _, m := range []*Membership{b, c, d} {
		if n, err := m.Join([]string{a.Addr()}); err != nil || n != 1 {
			t.Fatalf("join: %d, %v", n, err)
		}
	}
	waitView(t, a, "four alive members", func(v *View) bool {
		return v.Alive("a") && v.Alive("b") && v.Alive("c") && v.Alive("d") && v.Ring.Len() == 4
	})
	if m, ok := a.View().Member("b"); !ok || m.GRPCAddr != "127.0.0.1:1" || m.Zone != "z-b" {
		t.Fatalf("member b = %+v, %v; want its published metadata", m, ok)
	}
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitView(t, a, "c left and off the ring", func(v *View) bool {
		m, _ := v.Member("c")
		return m.State == Left && v.Ring.Len() == 3
	})
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitView(t, a, "b dead", func(v *View) bool { return !v.Alive("b") })
	if m, _ := a.View().Member("b"); m.State != Dead || a.View().Ring.Len() != 3 {
		t.Errorf("after b failed: state %v, ring of %d; want dead and still on the ring of 3", m.State, a.View().Ring.Len())
	}
}

func TestJoinNoSeed(t *testing.T) {
	a := start(t, "solo")
	if _, err := a.Join([]string{"127.0.0.1:1"}); err == nil {
		t.Fatal("join of an unreachable seed succeeded")
	}
	if !a.View().Alive("solo") || a.View().Ring.Len() != 1 {
		t.Fatalf("a lone node must see itself alive on the ring: %+v", a.View().Members)
	}
}
