package membership

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func startKeyed(t *testing.T, id string, keys ...[]byte) *Membership {
	t.Helper()
	m, err := Start(Config{Meta: Meta{ID: id, GRPCAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}, BindAddr: "127.0.0.1:0", Local: true, Keys: keys, ReconnectInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// Members with different keys, or one without any, never see each other;
// members that share a key do, and stay alive through a rotation in which
// each member's keyring changes at a different moment.
func TestGossipEncryption(t *testing.T) {
	k1, k2 := key(t), key(t)
	a, b := startKeyed(t, "a", k1), startKeyed(t, "b", k1)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("join with the same key: %v", err)
	}
	waitView(t, a, "b alive", func(v *View) bool { return v.Alive("b") })

	for name, m := range map[string]*Membership{"another key": startKeyed(t, "x", k2), "no key": startKeyed(t, "y")} {
		if _, err := m.Join([]string{a.Addr()}); err == nil {
			t.Errorf("%s: join succeeded", name)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if v := a.View(); len(v.Members) != 2 {
		t.Fatalf("members of a: %+v; want a and b only", v.Members)
	}

	// Rotation: install k2 everywhere, use it everywhere, remove k1.
	steps := []struct {
		primary []byte
		keys    [][]byte
	}{{k1, [][]byte{k1, k2}}, {k2, [][]byte{k1, k2}}, {k2, [][]byte{k2}}}
	for _, st := range steps {
		for _, m := range []*Membership{a, b} {
			if err := m.SetKeys(st.primary, st.keys); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // a window in which the two differ
		}
		if got := a.Keys(); !bytes.Equal(got[0], st.primary) || len(got) != len(st.keys) {
			t.Fatalf("keys after a step: %d keys, primary ok=%v", len(got), bytes.Equal(got[0], st.primary))
		}
	}
	time.Sleep(time.Second)
	if !a.View().Alive("b") || !b.View().Alive("a") {
		t.Fatal("a member was lost during the rotation")
	}
	// Only k2 opens the cluster now.
	if _, err := startKeyed(t, "old", k1).Join([]string{a.Addr()}); err == nil {
		t.Error("a member with the removed key joined")
	}
	if _, err := startKeyed(t, "new", k2).Join([]string{a.Addr()}); err != nil {
		t.Errorf("a member with the new key: %v", err)
	}
	if err := startKeyed(t, "plain").SetKeys(k1, [][]byte{k1}); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("SetKeys without encryption: %v; want ErrNotEncrypted", err)
	}
}
