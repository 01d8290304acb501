package replication

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/replication/quorum"
)

// leaseClock is a Fence whose expiry the test sets.
type leaseClock struct{ expiry atomic.Pointer[time.Time] }

func (l *leaseClock) LeaseExpiry() time.Time {
	if t := l.expiry.Load(); t != nil {
		return *t
	}
	return time.Time{}
}
func (l *leaseClock) set(t time.Time) { l.expiry.Store(&t) }

// A coordinator without a configuration lease refuses fenced keyspaces
// before sending anything, serves unfenced ones, and serves fenced ones
// again once it holds a lease.
func TestFencedKeyspaceNeedsLease(t *testing.T) {
	f := newFixture(t, 3, 3)
	lease := &leaseClock{}
	f.coord.cfg.Fence = lease
	ctx := context.Background()
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v0"), Consistency{Level: quorum.All}); err != nil {
		t.Fatalf("unfenced keyspace without a lease: %v", err)
	}
	fenced := func(on bool) {
		for _, m := range []*memKeyspaces{f.meta, f.cmeta} {
			c, _ := m.Keyspace("ks")
			c.Fenced = on
			m.set(c)
		}
	}
	fenced(true)
	_, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v1"), Consistency{})
	var le *LeaseError
	if !errors.As(err, &le) || le.Lost || !errors.Is(err, ErrConfigUnconfirmed) {
		t.Fatalf("fenced write without a lease: %v; want a LeaseError before sending", err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if rec, ok := f.local(t, id, "k"); !ok || string(rec.Value) != "v0" {
			t.Fatalf("replica %s holds %q after a refused write; want v0", id, rec.Value)
		}
	}
	if _, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{}); !errors.As(err, &le) {
		t.Fatalf("fenced read without a lease: %v", err)
	}
	if _, err := f.coord.Scan(ctx, "ks", nil, nil, 10, Consistency{}); !errors.As(err, &le) {
		t.Fatalf("fenced scan without a lease: %v", err)
	}
	lease.set(time.Now().Add(-time.Second))
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v1"), Consistency{}); !errors.As(err, &le) || le.Expired < time.Second {
		t.Fatalf("fenced write with an expired lease: %v; want a LeaseError saying how long ago", err)
	}
	lease.set(time.Now().Add(time.Minute))
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v2"), Consistency{}); err != nil {
		t.Fatalf("fenced write with a lease: %v", err)
	}
	res, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{})
	if err != nil || string(res.Record.Value) != "v2" {
		t.Fatalf("fenced read with a lease: %q, %v", res.Record.Value, err)
	}
}

// endingLease holds when an operation starts and has ended by the time it
// answers: its first LeaseExpiry is a minute ahead, every later one a
// second ago.
type endingLease struct{ calls atomic.Int32 }

func (l *endingLease) LeaseExpiry() time.Time {
	if l.calls.Add(1) == 1 {
		return time.Now().Add(time.Minute)
	}
	return time.Now().Add(-time.Second)
}

// A lease that ends while an operation is under way fails it, as an
// unknown outcome for a write: its replies were gathered, at least in part,
// after the metadata leader may have moved on.
func TestLeaseLostDuringOperation(t *testing.T) {
	f := newFixture(t, 3, 3)
	for _, m := range []*memKeyspaces{f.meta, f.cmeta} {
		c, _ := m.Keyspace("ks")
		c.Fenced = true
		m.set(c)
	}
	f.coord.cfg.Fence = &endingLease{}
	_, _, err := f.coord.Put(context.Background(), "ks", []byte("k"), []byte("v"), Consistency{})
	var le *LeaseError
	if !errors.As(err, &le) || !le.Lost {
		t.Fatalf("write whose lease ended under way: %v; want a LeaseError with Lost", err)
	}
	f.coord.cfg.Fence = &endingLease{}
	if _, err := f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{}); !errors.As(err, &le) || !le.Lost {
		t.Fatalf("read whose lease ended under way: %v; want a LeaseError with Lost", err)
	}
	f.coord.cfg.Fence = &endingLease{}
	if _, err := f.coord.Scan(context.Background(), "ks", nil, nil, 10, Consistency{}); !errors.As(err, &le) || !le.Lost {
		t.Fatalf("scan whose lease ended under way: %v; want a LeaseError with Lost", err)
	}
}

// An operation planned at one epoch does not answer once its node has
// applied another, even under a lease: the leader may already rely on the
// node having left the epoch the operation still acts under. It runs again
// under the new epoch, and fails only if the epoch keeps moving.
func TestEpochMovedDuringOperation(t *testing.T) {
	setup := func(t *testing.T) *fixture {
		f := newFixture(t, 3, 3)
		lease := &leaseClock{}
		lease.set(time.Now().Add(time.Minute))
		f.coord.cfg.Fence = lease
		for _, m := range []*memKeyspaces{f.meta, f.cmeta} {
			c, _ := m.Keyspace("ks")
			c.Fenced = true
			m.set(c)
		}
		return f
	}
	// bump moves both views to the next epoch, as a step the metadata log
	// applies on every node.
	bump := func(f *fixture) {
		for _, m := range []*memKeyspaces{f.meta, f.cmeta} {
			c, _ := m.Keyspace("ks")
			c.Epoch++
			m.set(c)
		}
	}
	t.Run("moved once", func(t *testing.T) {
		f := setup(t)
		var move sync.Once
		f.net.mu.Lock()
		f.net.readCtxs = func(string, context.Context) { move.Do(func() { bump(f) }) }
		f.net.mu.Unlock()
		res, err := f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{})
		if err != nil || res.Epoch != 2 {
			t.Fatalf("read whose node moved to epoch 2 under way = epoch %d, %v; want it read again at epoch 2", res.Epoch, err)
		}
		if f.coord.Metrics().EpochRetries.Load() == 0 {
			t.Error("no epoch retry counted")
		}
	})
	t.Run("keeps moving", func(t *testing.T) {
		f := setup(t)
		// Only the coordinator moves on; the replicas serve the newer
		// epochs it asks at without waiting for them.
		for _, r := range f.net.replicas {
			r.epochWait = time.Millisecond
		}
		f.net.mu.Lock()
		f.net.readCtxs = func(string, context.Context) {
			c, _ := f.cmeta.Keyspace("ks")
			c.Epoch++
			f.cmeta.set(c)
		}
		f.net.mu.Unlock()
		_, err := f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{})
		var le *LeaseError
		if !errors.As(err, &le) || !le.Lost || le.Moved == 0 {
			t.Fatalf("read whose epoch moves on every attempt: %v; want a LeaseError with Moved", err)
		}
	})
}
