package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

func openPebble(t testing.TB, dir string, opts Options) *Pebble {
	t.Helper()
	p, err := OpenPebble(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPebbleDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().UnixMilli()
	p := openPebble(t, dir, Options{})
	mustApply(t, p,
		Mutation{"ks", rec("a", "1", ver(base, 0, 1))},
		Mutation{"ks", tomb("b", ver(base, 0, 2))},
	)
	if err := p.Purge(context.Background(), "ks", [][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, p, Mutation{"ks", rec("c", "3", ver(base, 0, 1))})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p = openPebble(t, dir, Options{})
	recs, err := p.Scan("ks", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{tomb("b", ver(base, 0, 2)), rec("c", "3", ver(base, 0, 1))}
	if len(recs) != len(want) {
		t.Fatalf("after reopen: %+v, want %+v", recs, want)
	}
	for i := range want {
		if !sameRecord(recs[i], want[i]) {
			t.Fatalf("after reopen: %+v, want %+v", recs[i], want[i])
		}
	}
	// Versions survive too: an older write must still lose.
	if got := mustApply(t, p, Mutation{"ks", rec("c", "old", ver(base-1, 0, 1))}); got[0] {
		t.Fatal("older write applied after reopen")
	}
}

func TestPebbleGroupCommit(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{})
	const goroutines, perGoroutine = 64, 20
	base := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				k := fmt.Sprintf("g%02d-%02d", g, i)
				applied, err := p.Apply(context.Background(), []Mutation{{"ks", rec(k, k, ver(base, 0, 1))}})
				if err != nil || !applied[0] {
					t.Errorf("Apply %s = %v, %v", k, applied, err)
				}
			}
		})
	}
	wg.Wait()
	m := p.Metrics()
	const calls = goroutines * perGoroutine
	t.Logf("%d Apply calls, %d commits, %d syncs", calls, m.Commits, m.Syncs)
	if m.Syncs == 0 || m.Syncs >= calls || m.Commits != m.Syncs {
		t.Fatalf("metrics = %+v; want 0 < Syncs = Commits < %d", m, calls)
	}
	if m.Mutations != calls || m.Applied != calls {
		t.Fatalf("metrics = %+v; want %d mutations applied", m, calls)
	}
	recs, err := p.Scan("ks", nil, nil, 0)
	if err != nil || len(recs) != calls {
		t.Fatalf("Scan found %d records, %v; want %d", len(recs), err, calls)
	}
}

func TestPebbleNoSync(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{NoSync: true})
	mustApply(t, p, Mutation{"ks", rec("k", "v", ver(1, 0, 1))})
	if m := p.Metrics(); m.Commits != 1 || m.Syncs != 0 {
		t.Fatalf("metrics = %+v; want one unsynced commit", m)
	}
}

// TestPebbleCancelWhileQueued keeps the committer busy with a large request
// and cancels an Apply queued behind it: the Apply must report the
// cancellation and leave nothing behind.
func TestPebbleCancelWhileQueued(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{})
	base := time.Now().UnixMilli()
	for attempt := range 3 {
		big := &request{muts: make([]Mutation, 5000), done: make(chan struct{})}
		for i := range big.muts {
			big.muts[i] = Mutation{"big", rec(fmt.Sprintf("%d-%06d", attempt, i), "v", ver(base, 0, 1))}
		}
		p.qmu.Lock()
		p.queue = append(p.queue, big)
		p.qmu.Unlock()
		p.wake <- struct{}{}
		for { // an empty queue means the committer has taken big
			p.qmu.Lock()
			n := len(p.queue)
			p.qmu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		key := fmt.Sprintf("late-%d", attempt)
		_, err := p.Apply(ctx, []Mutation{{"ks", rec(key, "v", ver(base, 0, 1))}})
		cancel()
		<-big.done
		if big.err != nil {
			t.Fatal(big.err)
		}
		if err == nil {
			continue // big committed before the deadline; try again
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Apply error = %v, want context.DeadlineExceeded", err)
		}
		if _, ok := mustGet(t, p, "ks", key); ok {
			t.Fatal("a cancelled Apply was stored")
		}
		// The committer drops the withdrawn request and carries on.
		mustApply(t, p, Mutation{"ks", rec(key+"-after", "v", ver(base, 0, 1))})
		return
	}
	t.Skip("the committer never stayed busy past the deadline")
}

func TestPebbleCloseWithPendingWork(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 32
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			_, errs[w] = p.Apply(context.Background(), []Mutation{{"ks", rec(fmt.Sprint(w), "v", ver(1, 0, 1))}})
		})
	}
	close(start)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	p = openPebble(t, dir, Options{})
	for w, err := range errs {
		_, ok := mustGet(t, p, "ks", fmt.Sprint(w))
		switch {
		case err == nil && !ok:
			t.Errorf("writer %d succeeded but its record is gone", w)
		case err != nil && !errors.Is(err, ErrClosed):
			t.Errorf("writer %d: %v, want nil or ErrClosed", w, err)
		case err != nil && ok:
			t.Errorf("writer %d failed but its record was stored", w)
		}
	}
}

// TestPebbleCorruptRecordFailsItsRequestOnly plants an undecodable value: the
// request touching it fails whole, while other requests still commit.
func TestPebbleCorruptRecordFailsItsRequestOnly(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err := p.db.Set(appendKey(nil, "ks", []byte("bad")), []byte("short"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Get("ks", []byte("bad")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get error = %v, want ErrCorrupt", err)
	}
	if _, err := p.Scan("ks", nil, nil, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Scan error = %v, want ErrCorrupt", err)
	}

	// Queue both requests before the committer runs so they share a group.
	p.qmu.Lock()
	good := &request{muts: []Mutation{{"ks", rec("good", "v", ver(1, 0, 1))}}, done: make(chan struct{})}
	bad := &request{muts: []Mutation{{"ks", rec("first", "v", ver(1, 0, 1))}, {"ks", rec("bad", "v", ver(1, 0, 1))}}, done: make(chan struct{})}
	p.queue = append(p.queue, bad, good)
	p.qmu.Unlock()
	p.wake <- struct{}{}
	<-bad.done
	<-good.done
	if !errors.Is(bad.err, ErrCorrupt) || bad.applied != nil {
		t.Fatalf("bad request: %v, %v; want ErrCorrupt", bad.applied, bad.err)
	}
	if good.err != nil || !good.applied[0] {
		t.Fatalf("good request: %v, %v", good.applied, good.err)
	}
	if _, ok := mustGet(t, p, "ks", "first"); ok {
		t.Fatal("part of a failed request was stored")
	}
	if _, ok := mustGet(t, p, "ks", "good"); !ok {
		t.Fatal("a request sharing the group with a failed one was lost")
	}

	// Collection skips the bad record instead of failing.
	mustApply(t, p, Mutation{"ks", tomb("gone", ver(1, 0, 1))})
	if n, err := p.CollectTombstones(time.Now(), time.Hour); err != nil || n != 1 {
		t.Fatalf("CollectTombstones = %d, %v; want 1", n, err)
	}
}

// TestPebbleCollectionLosesToNewerWrite replays the race the committer
// guards against: a tombstone is chosen for collection, then overwritten
// before the deletion is committed.
func TestPebbleCollectionLosesToNewerWrite(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{})
	old := ver(time.Now().Add(-time.Hour).UnixMilli(), 0, 1)
	mustApply(t, p, Mutation{"ks", tomb("k", old)})
	mustApply(t, p, Mutation{"ks", tomb("k2", old)})
	cands := []candidate{
		{key: appendKey(nil, "ks", []byte("k")), version: old},
		{key: appendKey(nil, "ks", []byte("k2")), version: old},
	}
	newer := rec("k", "back", ver(time.Now().UnixMilli(), 0, 1))
	mustApply(t, p, Mutation{"ks", newer})

	r := &request{gc: cands, done: make(chan struct{})}
	if err := p.submit(context.Background(), r); err != nil || r.removed != 1 {
		t.Fatalf("collection removed %d, %v; want 1", r.removed, err)
	}
	if got, ok := mustGet(t, p, "ks", "k"); !ok || !sameRecord(got, newer) {
		t.Fatalf("newer write lost to collection: %+v, %v", got, ok)
	}
}

func TestOptionsEnsureDefaults(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.NoSync || o.MaxGroupBytes <= 0 || o.CacheSize <= 0 || o.Logger == nil {
		t.Fatalf("defaults = %+v", o)
	}
	o = Options{MaxGroupBytes: 7, CacheSize: 9}
	o.EnsureDefaults()
	if o.MaxGroupBytes != 7 || o.CacheSize != 9 {
		t.Fatalf("EnsureDefaults overrode set fields: %+v", o)
	}
}

// TestPebbleDropsExpiredQueuedRequest queues, behind the committer's back, a
// request whose caller's deadline has passed and one whose has not: the
// committer fails the first with DeadlineExceeded without writing it, and
// commits the second.
func TestPebbleDropsExpiredQueuedRequest(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{})
	base := time.Now().UnixMilli()
	expired := &request{muts: []Mutation{{"ks", rec("expired", "v", ver(base, 0, 1))}}, size: 64,
		deadline: time.Now().Add(-time.Millisecond), done: make(chan struct{})}
	live := &request{muts: []Mutation{{"ks", rec("live", "v", ver(base, 0, 1))}}, size: 64,
		deadline: time.Now().Add(time.Minute), done: make(chan struct{})}
	p.qmu.Lock()
	p.queue = append(p.queue, expired, live)
	p.queuedBytes += expired.size + live.size
	p.qmu.Unlock()
	p.wake <- struct{}{}
	<-expired.done
	<-live.done
	if !errors.Is(expired.err, context.DeadlineExceeded) {
		t.Errorf("expired request: %v; want DeadlineExceeded", expired.err)
	}
	if _, ok := mustGet(t, p, "ks", "expired"); ok {
		t.Error("the committer wrote a request whose deadline had passed")
	}
	if live.err != nil {
		t.Fatalf("live request: %v", live.err)
	}
	if _, ok := mustGet(t, p, "ks", "live"); !ok {
		t.Error("the live request was not written")
	}
}

// TestPebbleQueueIsBounded fills the commit queue while the committer
// sleeps: an Apply that finds no room waits within its deadline and fails
// with DeadlineExceeded without joining the queue; one that waits longer
// gets in once the committer takes what was queued.
func TestPebbleQueueIsBounded(t *testing.T) {
	p := openPebble(t, t.TempDir(), Options{})
	p.maxQueue = 1024
	base := time.Now().UnixMilli()
	// The committer only wakes when signalled: this request fills the queue
	// and stays there until the test wakes it.
	filler := &request{muts: []Mutation{{"ks", rec("filler", "v", ver(base, 0, 1))}}, size: 1000, done: make(chan struct{})}
	p.qmu.Lock()
	p.queue = append(p.queue, filler)
	p.queuedBytes += filler.size
	p.qmu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := p.Apply(ctx, []Mutation{{"ks", rec("refused", string(make([]byte, 100)), ver(base, 0, 1))}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply to a full queue: %v; want DeadlineExceeded", err)
	}
	p.qmu.Lock()
	queued := len(p.queue)
	p.qmu.Unlock()
	if queued != 1 {
		t.Fatalf("%d requests queued; want only the filler", queued)
	}

	waited := make(chan error, 1)
	go func() {
		_, err := p.Apply(context.Background(), []Mutation{{"ks", rec("waited", string(make([]byte, 100)), ver(base, 0, 1))}})
		waited <- err
	}()
	p.wake <- struct{}{}
	<-filler.done
	if err := <-waited; err != nil {
		t.Fatalf("Apply that waited for room: %v", err)
	}
	for key, want := range map[string]bool{"filler": true, "waited": true, "refused": false} {
		if _, ok := mustGet(t, p, "ks", key); ok != want {
			t.Errorf("key %s stored=%v; want %v", key, ok, want)
		}
	}
}

// Flush writes the memtable out (a planned stop does it so that the next
// open replays no log); the data stays readable, and after Close it is
// ErrClosed.
func TestPebbleFlush(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir, Options{})
	mustApply(t, p, Mutation{"ks", rec("a", "1", ver(time.Now().UnixMilli(), 0, 1))})
	before := p.db.Metrics().Flush.Count
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if after := p.db.Metrics().Flush.Count; after <= before {
		t.Fatalf("flushes: %d before Flush, %d after; want more", before, after)
	}
	if _, ok, err := p.Get("ks", []byte("a")); err != nil || !ok {
		t.Fatalf("Get after Flush: found=%v err=%v", ok, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v; want ErrClosed", err)
	}
}
