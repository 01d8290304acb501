package node

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/internal/security"
)

// The keyring's transitions, step by step, as a rotation and its mistakes
// take them.
func TestGossipKeyringTransitions(t *testing.T) {
	k1, k2, k3 := security.EncodeGossipKey(security.NewGossipKey()), security.EncodeGossipKey(security.NewGossipKey()), security.EncodeGossipKey(security.NewGossipKey())
	ring := func(primary string, keys ...string) GossipKeyring {
		keys = slices.Clone(keys)
		slices.Sort(keys)
		return GossipKeyring{Primary: primary, Keys: keys}
	}
	start := ring(k1, k1)
	for _, tc := range []struct {
		name    string
		from    GossipKeyring
		op, key string
		want    GossipKeyring
		err     error
	}{
		{"install a new key", start, keyringInstall, k2, ring(k1, k1, k2), nil},
		{"install again is no change", ring(k1, k1, k2), keyringInstall, k2, ring(k1, k1, k2), nil},
		{"install with spaces around", start, keyringInstall, " " + k2 + "\n", ring(k1, k1, k2), nil},
		{"use an installed key", ring(k1, k1, k2), keyringUse, k2, ring(k2, k1, k2), nil},
		{"use the primary is no change", start, keyringUse, k1, start, nil},
		{"use a key not installed", start, keyringUse, k3, start, ErrUnknownKey},
		{"remove the old key", ring(k2, k1, k2), keyringRemove, k1, ring(k2, k2), nil},
		{"remove the primary", ring(k2, k1, k2), keyringRemove, k2, ring(k2, k1, k2), ErrPrimaryKey},
		{"remove the only key", start, keyringRemove, k1, start, ErrPrimaryKey},
		{"remove a key not installed", start, keyringRemove, k3, start, ErrUnknownKey},
		{"not base64", start, keyringInstall, "not a key!", start, security.ErrBadGossipKey},
		{"too short", start, keyringInstall, security.EncodeGossipKey([]byte("sixteen bytes...")), start, security.ErrBadGossipKey},
		{"empty", start, keyringUse, "", start, security.ErrBadGossipKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := GossipKeyring{Primary: tc.from.Primary, Keys: slices.Clone(tc.from.Keys)}
			got, err := tc.from.apply(tc.op, tc.key)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got.Primary != tc.want.Primary || !slices.Equal(got.Keys, tc.want.Keys) {
				t.Fatalf("keyring = %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(tc.from.Keys, from.Keys) {
				t.Fatal("apply modified its receiver")
			}
			if !slices.Contains(got.Keys, got.Primary) {
				t.Fatal("the primary is not among the keys")
			}
		})
	}
}

// The state machine applies keyring entries to the log's keyring (the
// first one to the proposer's), hands each result to the node, and keeps
// the keyring across a snapshot.
func TestKeyringEntriesAndSnapshot(t *testing.T) {
	k1, k2 := security.EncodeGossipKey(security.NewGossipKey()), security.EncodeGossipKey(security.NewGossipKey())
	f := newFSM()
	var applied []uint64
	f.gossip.onApply = func(index uint64, k GossipKeyring) { applied = append(applied, index) }
	entry := func(index uint64, c keyringChange) error {
		b, _ := json.Marshal(command{Op: "keyring", Keyring: &c})
		return f.Apply(&raft.Log{Index: index, Data: b}).(applyResult).err
	}
	base := GossipKeyring{Primary: k1, Keys: []string{k1}}
	if err := entry(1, keyringChange{Op: keyringInstall, Key: k2}); !errors.Is(err, ErrKeyringDisabled) {
		t.Fatalf("first entry without a base: %v", err)
	}
	if err := entry(2, keyringChange{Op: keyringInstall, Key: k2, Base: &base}); err != nil {
		t.Fatal(err)
	}
	// A later entry's base is ignored: the log's keyring wins.
	stale := GossipKeyring{Primary: k2, Keys: []string{k2}}
	if err := entry(3, keyringChange{Op: keyringRemove, Key: k1, Base: &stale}); !errors.Is(err, ErrPrimaryKey) {
		t.Fatalf("remove of the log's primary: %v", err)
	}
	if err := entry(4, keyringChange{Op: keyringUse, Key: k2}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, []uint64{2, 4}) {
		t.Fatalf("node told of entries %v, want [2 4]", applied)
	}
	snap, _ := f.Snapshot()
	dir := t.TempDir()
	store, err := raft.NewFileSnapshotStore(dir, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, 4, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	var restored GossipKeyring
	g.gossip.onApply = func(index uint64, k GossipKeyring) { restored = k }
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if restored.Primary != k2 || len(restored.Keys) != 2 || g.gossip.state.Load().Primary != k2 {
		t.Fatalf("restored keyring %+v", restored)
	}
}

// A node's keyring file wins over gossip.key once written, and a replayed
// entry older than the file does not step the keyring back.
func TestKeyringFileWinsOverGossipKey(t *testing.T) {
	certs := certDir(t)
	cfg := Config{DataDir: t.TempDir(), Security: loadMaterial(t, certs, "")}
	log := slog.New(slog.DiscardHandler)
	g, err := loadGossipKeys(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := g.inForce()
	k2 := GossipKeyring{Primary: security.EncodeGossipKey(security.NewGossipKey())}
	k2.Keys = []string{k2.Primary}
	g.apply(7, k2)
	g.apply(5, k1) // a replay of an older entry
	if cur, _ := g.inForce(); cur.Primary != k2.Primary {
		t.Fatal("an older entry replaced the keyring")
	}
	again, err := loadGossipKeys(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if cur, ok := again.inForce(); !ok || cur.Primary != k2.Primary || !slices.Equal(cur.Keys, k2.Keys) || again.cur.Index != 7 {
		t.Fatalf("after a restart the keyring is %+v at %d; want the persisted one at 7", cur, again.cur.Index)
	}
	if insecure, err := loadGossipKeys(Config{DataDir: cfg.DataDir}, log); err != nil {
		t.Fatal(err)
	} else if _, ok := insecure.inForce(); ok {
		t.Fatal("an insecure node encrypts gossip")
	}
}
