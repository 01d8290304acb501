package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestPebbleEngine(t *testing.T) {
	runEngineSuite(t, func(t *testing.T) Engine {
		p, err := OpenPebble(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

func TestMemoryEngine(t *testing.T) {
	runEngineSuite(t, func(t *testing.T) Engine { return NewMemory() })
}

// ver builds a version from a wall-clock millisecond, a logical counter and a
// node, the way the hybrid logical clock does.
func ver(ms int64, logical uint16, node uint32) Version {
	return Version{Timestamp: uint64(ms)<<16 | uint64(logical), Node: node}
}

func rec(key, value string, v Version) Record {
	return Record{Key: []byte(key), Value: []byte(value), Version: v}
}

func tomb(key string, v Version) Record {
	return Record{Key: []byte(key), Version: v, Tombstone: true}
}

func mustApply(t *testing.T, e Engine, muts ...Mutation) []bool {
	t.Helper()
	applied, err := e.Apply(context.Background(), muts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(applied) != len(muts) {
		t.Fatalf("Apply returned %d results for %d mutations", len(applied), len(muts))
	}
	return applied
}

func mustGet(t *testing.T, e Engine, keyspace, key string) (Record, bool) {
	t.Helper()
	r, ok, err := e.Get(keyspace, []byte(key))
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", keyspace, key, err)
	}
	return r, ok
}

func sameRecord(a, b Record) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.Version == b.Version && a.Tombstone == b.Tombstone
}

func keysOf(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Key)
	}
	return out
}

// runEngineSuite checks the Engine contract; every engine must pass it.
func runEngineSuite(t *testing.T, open func(t *testing.T) Engine) {
	newEngine := func(t *testing.T) Engine {
		e := open(t)
		t.Cleanup(func() { e.Close() })
		return e
	}
	base := time.Now().UnixMilli()

	t.Run("LastWriterWins", func(t *testing.T) {
		e := newEngine(t)
		cases := []struct {
			name        string
			first, then Record
			wantApplied bool
		}{
			{"newer wins", rec("k", "old", ver(base, 0, 1)), rec("k", "new", ver(base+1, 0, 1)), true},
			{"logical counter orders", rec("k", "old", ver(base, 1, 1)), rec("k", "new", ver(base, 2, 1)), true},
			{"older ignored", rec("k", "new", ver(base+1, 0, 1)), rec("k", "old", ver(base, 0, 1)), false},
			{"equal ignored", rec("k", "first", ver(base, 0, 1)), rec("k", "second", ver(base, 0, 1)), false},
			{"higher node breaks tie", rec("k", "n1", ver(base, 0, 1)), rec("k", "n2", ver(base, 0, 2)), true},
			{"lower node loses tie", rec("k", "n2", ver(base, 0, 2)), rec("k", "n1", ver(base, 0, 1)), false},
			{"newer tombstone deletes", rec("k", "v", ver(base, 0, 1)), tomb("k", ver(base+1, 0, 1)), true},
			{"older write cannot revive", tomb("k", ver(base+1, 0, 1)), rec("k", "v", ver(base, 0, 1)), false},
			{"newer write revives", tomb("k", ver(base, 0, 1)), rec("k", "v", ver(base+1, 0, 1)), true},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ks := fmt.Sprintf("lww%d", i)
				if got := mustApply(t, e, Mutation{ks, c.first}); !got[0] {
					t.Fatal("first write to a new key not applied")
				}
				if got := mustApply(t, e, Mutation{ks, c.then}); got[0] != c.wantApplied {
					t.Fatalf("applied = %v, want %v", got[0], c.wantApplied)
				}
				want := c.first
				if c.wantApplied {
					want = c.then
				}
				if want.Tombstone {
					want.Value = nil
				}
				got, ok := mustGet(t, e, ks, "k")
				if !ok || !sameRecord(got, want) {
					t.Fatalf("Get = %+v, %v; want %+v", got, ok, want)
				}
			})
		}
	})

	t.Run("TombstoneIsReturned", func(t *testing.T) {
		e := newEngine(t)
		mustApply(t, e, Mutation{"ks", rec("k", "v", ver(base, 0, 1))})
		mustApply(t, e, Mutation{"ks", Record{Key: []byte("k"), Value: []byte("ignored"), Version: ver(base+1, 0, 1), Tombstone: true}})
		got, ok := mustGet(t, e, "ks", "k")
		if !ok || !got.Tombstone || got.Value != nil || got.Version != ver(base+1, 0, 1) {
			t.Fatalf("Get = %+v, %v; want the tombstone without value", got, ok)
		}
		if _, ok := mustGet(t, e, "ks", "never"); ok {
			t.Fatal("Get of an unwritten key reported ok")
		}
	})

	t.Run("BatchDecidesEachMutation", func(t *testing.T) {
		e := newEngine(t)
		mustApply(t, e, Mutation{"ks", rec("b", "stored", ver(base+5, 0, 1))})
		got := mustApply(t, e,
			Mutation{"ks", rec("a", "a1", ver(base, 0, 1))},
			Mutation{"ks", rec("b", "stale", ver(base, 0, 1))},
			Mutation{"ks", rec("a", "a2", ver(base+1, 0, 1))}, // same key later in the batch
			Mutation{"ks", rec("a", "a0", ver(base-1, 0, 1))},
			Mutation{"other", rec("a", "x", ver(base, 0, 1))},
		)
		if want := []bool{true, false, true, false, true}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("applied = %v, want %v", got, want)
		}
		for _, c := range []struct{ ks, key, value string }{{"ks", "a", "a2"}, {"ks", "b", "stored"}, {"other", "a", "x"}} {
			if r, ok := mustGet(t, e, c.ks, c.key); !ok || string(r.Value) != c.value {
				t.Errorf("Get(%q, %q) = %q, %v; want %q", c.ks, c.key, r.Value, ok, c.value)
			}
		}
	})

	t.Run("BatchIsAtomic", func(t *testing.T) {
		e := newEngine(t)
		const rounds = 200
		keys := []string{"x", "y", "z"}
		done := make(chan struct{})
		var readErr error
		go func() {
			defer close(done)
			for {
				recs, err := e.Scan("atomic", nil, nil, 0)
				if err != nil {
					readErr = err
					return
				}
				if len(recs) != 0 && len(recs) != len(keys) {
					readErr = fmt.Errorf("saw %d of %d keys of one batch", len(recs), len(keys))
					return
				}
				for _, r := range recs[min(1, len(recs)):] {
					if !bytes.Equal(r.Value, recs[0].Value) {
						readErr = fmt.Errorf("saw values %q and %q from different batches", recs[0].Value, r.Value)
						return
					}
				}
				if len(recs) > 0 && string(recs[0].Value) == fmt.Sprint(rounds-1) {
					return
				}
			}
		}()
		for i := range rounds {
			muts := make([]Mutation, len(keys))
			for j, k := range keys {
				muts[j] = Mutation{"atomic", rec(k, fmt.Sprint(i), ver(base+int64(i), 0, 1))}
			}
			mustApply(t, e, muts...)
		}
		<-done
		if readErr != nil {
			t.Fatal(readErr)
		}
	})

	t.Run("Scan", func(t *testing.T) {
		e := newEngine(t)
		keys := []string{"k1", "k2", "k3", "k4", "k5"}
		var muts []Mutation
		for _, i := range rand.Perm(len(keys)) {
			muts = append(muts, Mutation{"a", rec(keys[i], "v"+keys[i], ver(base, 0, 1))})
		}
		muts = append(muts,
			Mutation{"a", tomb("k6", ver(base, 0, 1))},
			Mutation{"ab", rec("k0", "leak", ver(base, 0, 1))},
			Mutation{"ab", rec("k9", "leak", ver(base, 0, 1))},
			Mutation{"a\x01", rec("k", "leak", ver(base, 0, 1))},
			Mutation{"b", rec("k3", "leak", ver(base, 0, 1))},
		)
		mustApply(t, e, muts...)

		cases := []struct {
			name       string
			ks         string
			start, end []byte
			limit      int
			want       []string
		}{
			{"whole keyspace", "a", nil, nil, 0, []string{"k1", "k2", "k3", "k4", "k5", "k6"}},
			{"start inclusive", "a", []byte("k3"), nil, 0, []string{"k3", "k4", "k5", "k6"}},
			{"end exclusive", "a", []byte("k2"), []byte("k4"), 0, []string{"k2", "k3"}},
			{"start between keys", "a", []byte("k2a"), []byte("k5"), 0, []string{"k3", "k4"}},
			{"limit", "a", nil, nil, 2, []string{"k1", "k2"}},
			{"negative limit is no limit", "a", []byte("k5"), nil, -1, []string{"k5", "k6"}},
			{"empty range", "a", []byte("k3"), []byte("k3"), 0, nil},
			{"inverted range", "a", []byte("k4"), []byte("k2"), 0, nil},
			{"end past last", "a", []byte("k6"), []byte("zz"), 0, []string{"k6"}},
			{"longer keyspace isolated", "ab", nil, nil, 0, []string{"k0", "k9"}},
			{"keyspace with low byte isolated", "a\x01", nil, nil, 0, []string{"k"}},
			{"other keyspace", "b", nil, nil, 0, []string{"k3"}},
			{"unknown keyspace", "zz", nil, nil, 0, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				recs, err := e.Scan(c.ks, c.start, c.end, c.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got := keysOf(recs); fmt.Sprint(got) != fmt.Sprint(c.want) {
					t.Fatalf("keys = %q, want %q", got, c.want)
				}
			})
		}
		recs, err := e.Scan("a", []byte("k1"), []byte("k2"), 0)
		if err != nil || len(recs) != 1 || string(recs[0].Value) != "vk1" || recs[0].Version != ver(base, 0, 1) {
			t.Fatalf("Scan record = %+v, %v", recs, err)
		}
		recs, err = e.Scan("a", []byte("k6"), nil, 0)
		if err != nil || len(recs) != 1 || !recs[0].Tombstone {
			t.Fatalf("Scan must return tombstones, got %+v, %v", recs, err)
		}
	})

	t.Run("Purge", func(t *testing.T) {
		e := newEngine(t)
		const hints = "\x01hints"
		mustApply(t, e,
			Mutation{hints, rec("h1", "a", ver(base, 0, 1))},
			Mutation{hints, rec("h2", "b", ver(base, 0, 1))},
			Mutation{hints, tomb("h3", ver(base, 0, 1))},
			Mutation{"user", rec("h1", "keep", ver(base, 0, 1))},
		)
		if err := e.Purge(context.Background(), hints, [][]byte{[]byte("h1"), []byte("h3"), []byte("missing")}); err != nil {
			t.Fatal(err)
		}
		recs, err := e.Scan(hints, nil, nil, 0)
		if err != nil || fmt.Sprint(keysOf(recs)) != "[h2]" {
			t.Fatalf("after Purge scan = %q, %v; want [h2]", keysOf(recs), err)
		}
		if _, ok := mustGet(t, e, "user", "h1"); !ok {
			t.Fatal("Purge removed a key of another keyspace")
		}
		// A purged key has no version left, so any write lands again.
		if got := mustApply(t, e, Mutation{hints, rec("h1", "again", ver(base-1, 0, 1))}); !got[0] {
			t.Fatal("write after Purge not applied")
		}
		if err := e.Purge(context.Background(), hints, nil); err != nil {
			t.Fatalf("empty Purge: %v", err)
		}
	})

	t.Run("CollectTombstones", func(t *testing.T) {
		e := newEngine(t)
		now := time.Now()
		old := ver(now.Add(-2*time.Hour).UnixMilli(), 0, 1)
		recent := ver(now.Add(-10*time.Minute).UnixMilli(), 0, 1)
		mustApply(t, e,
			Mutation{"ks", tomb("old", old)},
			Mutation{"ks2", tomb("old", old)},
			Mutation{"ks", tomb("recent", recent)},
			Mutation{"ks", rec("live", "v", old)},
		)
		n, err := e.CollectTombstones(now, time.Hour)
		if err != nil || n != 2 {
			t.Fatalf("CollectTombstones = %d, %v; want 2", n, err)
		}
		for _, c := range []struct {
			ks, key string
			want    bool
		}{{"ks", "old", false}, {"ks2", "old", false}, {"ks", "recent", true}, {"ks", "live", true}} {
			if _, ok := mustGet(t, e, c.ks, c.key); ok != c.want {
				t.Errorf("after collection %q/%q present = %v, want %v", c.ks, c.key, ok, c.want)
			}
		}
		if n, err := e.CollectTombstones(now, time.Hour); err != nil || n != 0 {
			t.Fatalf("second CollectTombstones = %d, %v; want 0", n, err)
		}
		if got := e.Metrics().TombstonesCollected; got != 2 {
			t.Fatalf("TombstonesCollected = %d, want 2", got)
		}
	})

	t.Run("CallerBuffersAreNotRetained", func(t *testing.T) {
		e := newEngine(t)
		key, value := []byte("key"), []byte("value")
		mustApply(t, e, Mutation{"ks", Record{Key: key, Value: value, Version: ver(base, 0, 1)}})
		copy(key, "XXX")
		copy(value, "XXXXX")
		got, ok := mustGet(t, e, "ks", "key")
		if !ok || string(got.Value) != "value" {
			t.Fatalf("stored value changed with the caller's buffer: %q, %v", got.Value, ok)
		}
		copy(got.Key, "YYY")
		copy(got.Value, "YYYYY")
		recs, err := e.Scan("ks", nil, nil, 0)
		if err != nil || len(recs) != 1 || string(recs[0].Key) != "key" || string(recs[0].Value) != "value" {
			t.Fatalf("stored record changed with a returned buffer: %+v, %v", recs, err)
		}
		copy(recs[0].Value, "ZZZZZ")
		if got, _ := mustGet(t, e, "ks", "key"); string(got.Value) != "value" {
			t.Fatalf("stored value changed with a scanned buffer: %q", got.Value)
		}
	})

	t.Run("ConcurrentApplyKeepsMax", func(t *testing.T) {
		e := newEngine(t)
		const writers, writes, keys = 16, 50, 8
		var mu sync.Mutex
		best := make(map[string]Version)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for range writes {
					k := fmt.Sprintf("k%d", r.IntN(keys))
					v := ver(base+r.Int64N(1000), uint16(r.IntN(4)), uint32(w))
					if _, err := e.Apply(context.Background(), []Mutation{{"ks", rec(k, fmt.Sprint(v), v)}}); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if best[k].Less(v) {
						best[k] = v
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for k, v := range best {
			got, ok := mustGet(t, e, "ks", k)
			if !ok || got.Version != v || string(got.Value) != fmt.Sprint(v) {
				t.Errorf("%s = %+v, want version %+v", k, got, v)
			}
		}
		if m := e.Metrics(); m.Mutations != writers*writes || m.Applied == 0 || m.Applied > m.Mutations {
			t.Errorf("metrics = %+v", m)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		e := newEngine(t)
		ctx := context.Background()
		bad := []Mutation{
			{"", rec("k", "v", ver(base, 0, 1))},
			{"a\x00b", rec("k", "v", ver(base, 0, 1))},
			{"ks", rec("", "v", ver(base, 0, 1))},
		}
		for _, m := range bad {
			if _, err := e.Apply(ctx, []Mutation{{"ks", rec("ok", "v", ver(base, 0, 1))}, m}); !errors.Is(err, ErrInvalid) {
				t.Errorf("Apply(%q, %q) error = %v, want ErrInvalid", m.Keyspace, m.Record.Key, err)
			}
		}
		if _, ok := mustGet(t, e, "ks", "ok"); ok {
			t.Error("a rejected batch was partly applied")
		}
		if _, _, err := e.Get("a\x00", []byte("k")); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get error = %v, want ErrInvalid", err)
		}
		if _, _, err := e.Get("ks", nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get error = %v, want ErrInvalid", err)
		}
		if _, err := e.Scan("", nil, nil, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Scan error = %v, want ErrInvalid", err)
		}
		if err := e.Purge(ctx, "ks", [][]byte{nil}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Purge error = %v, want ErrInvalid", err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		e := newEngine(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.Apply(ctx, []Mutation{{"ks", rec("k", "v", ver(base, 0, 1))}}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Apply error = %v, want context.Canceled", err)
		}
		if _, ok := mustGet(t, e, "ks", "k"); ok {
			t.Fatal("cancelled Apply was stored")
		}
		if err := e.Purge(ctx, "ks", [][]byte{[]byte("k")}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Purge error = %v, want context.Canceled", err)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		e := open(t)
		mustApply(t, e, Mutation{"ks", rec("k", "v", ver(base, 0, 1))})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		errs := map[string]error{"Close": e.Close()}
		_, _, errs["Get"] = e.Get("ks", []byte("k"))
		_, errs["Scan"] = e.Scan("ks", nil, nil, 0)
		_, errs["Apply"] = e.Apply(ctx, []Mutation{{"ks", rec("k", "v", ver(base+1, 0, 1))}})
		errs["Purge"] = e.Purge(ctx, "ks", [][]byte{[]byte("k")})
		_, errs["CollectTombstones"] = e.CollectTombstones(time.Now(), 0)
		for name, err := range errs {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		}
	})
}
