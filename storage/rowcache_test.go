package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Once Apply has returned, no Get that starts later returns an older
// version, however the row cache's fills, evictions and commits interleave:
// writers of a few hot keys race readers, with a cache small enough to evict
// all the time and keys sharing stripes. The seqlock in rowcache.go is what
// this checks; without it a reader's fill of a version read just before a
// commit lands after the commit's own entry is evicted, and later reads go
// back in time.
func TestRowCacheNeverServesOlderThanAcknowledged(t *testing.T) {
	for _, budget := range []int64{400, 64 << 10} {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			p := openPebble(t, t.TempDir(), Options{NoSync: true, RowCacheSize: budget})
			const keys, writesPerKey, readers = 8, 300, 4
			var acked [keys]atomic.Uint64 // last acknowledged timestamp per key
			var wg sync.WaitGroup
			errs := make(chan error, keys+readers)
			done := make(chan struct{})
			for k := range keys {
				wg.Go(func() {
					key := fmt.Sprintf("k%d", k)
					for i := 1; i <= writesPerKey; i++ {
						r := rec(key, fmt.Sprintf("v%d", i), ver(int64(i), 0, 1))
						if i%10 == 0 {
							r = tomb(key, ver(int64(i), 0, 1))
						}
						if _, err := p.Apply(context.Background(), []Mutation{{"ks", r}}); err != nil {
							errs <- err
							return
						}
						acked[k].Store(r.Version.Timestamp)
					}
				})
			}
			var rwg sync.WaitGroup
			var reads atomic.Int64
			for range readers {
				rwg.Go(func() {
					rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
					for {
						select {
						case <-done:
							return
						default:
						}
						k := rng.IntN(keys)
						want := acked[k].Load()
						got, ok, err := p.Get("ks", []byte(fmt.Sprintf("k%d", k)))
						if err != nil {
							errs <- err
							return
						}
						reads.Add(1)
						if want > 0 && (!ok || got.Version.Timestamp < want) {
							errs <- fmt.Errorf("k%d: Get returned version %d (found %v) after version %d was acknowledged", k, got.Version.Timestamp, ok, want)
							return
						}
					}
				})
			}
			wg.Wait()
			close(done)
			rwg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			m := p.Metrics()
			if m.RowCacheHits == 0 {
				t.Errorf("no row cache hit in %d reads; the test did not exercise the cache", reads.Load())
			}
			if m.RowCacheBytes > budget {
				t.Errorf("row cache holds %d bytes; budget %d", m.RowCacheBytes, budget)
			}
			t.Logf("%d reads, %d hits, %d misses, %d bytes cached", reads.Load(), m.RowCacheHits, m.RowCacheMisses, m.RowCacheBytes)
		})
	}
}

// Purge and tombstone collection remove keys from the cache as well as from
// pebble, and a cached record is handed out as a copy.
func TestRowCacheFollowsPurgeAndCollection(t *testing.T) {
	ctx := context.Background()
	p := openPebble(t, t.TempDir(), Options{NoSync: true})
	old := time.Now().Add(-time.Hour).UnixMilli()
	mustApply(t, p, Mutation{"ks", rec("a", "1", ver(old, 0, 1))}, Mutation{"ks", tomb("b", ver(old, 0, 1))})
	for range 2 { // the second Get is a hit
		if r, ok, err := p.Get("ks", []byte("a")); err != nil || !ok || string(r.Value) != "1" {
			t.Fatalf("Get a = %q %v %v", r.Value, ok, err)
		}
		if r, ok, err := p.Get("ks", []byte("b")); err != nil || !ok || !r.Tombstone {
			t.Fatalf("Get b = %+v %v %v; want the tombstone", r, ok, err)
		}
	}
	r, _, _ := p.Get("ks", []byte("a"))
	r.Value[0] = 'X' // the caller owns what it gets
	if r, _, _ := p.Get("ks", []byte("a")); string(r.Value) != "1" {
		t.Fatalf("a caller's change to a returned value reached the cache: %q", r.Value)
	}
	if p.Metrics().RowCacheHits == 0 {
		t.Fatal("no hit after reading the same keys twice")
	}
	if err := p.Purge(ctx, "ks", [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := p.Get("ks", []byte("a")); ok {
		t.Error("a purged key is still served")
	}
	if n, err := p.CollectTombstones(time.Now(), time.Minute); err != nil || n != 1 {
		t.Fatalf("CollectTombstones = %d, %v; want 1", n, err)
	}
	if _, ok, _ := p.Get("ks", []byte("b")); ok {
		t.Error("a collected tombstone is still served")
	}
}

// A disabled cache leaves reads to pebble.
func TestRowCacheDisabled(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{NoSync: true, RowCacheSize: -1})
	mustApply(t, p, Mutation{"ks", rec("a", "1", ver(1, 0, 1))})
	for range 2 {
		if r, ok, err := p.Get("ks", []byte("a")); err != nil || !ok || string(r.Value) != "1" {
			t.Fatalf("Get a = %q %v %v", r.Value, ok, err)
		}
	}
	if m := p.Metrics(); m.RowCacheHits+m.RowCacheMisses != 0 {
		t.Errorf("metrics %+v; want no cache activity", m)
	}
}
