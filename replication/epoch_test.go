package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/replication/quorum"
)

// aheadFixture is a 3-node fixture whose replica n3 has applied epoch 7
// while n1, n2 and the coordinator are at epoch 1; each catches up when it
// waits for the metadata log.
func aheadFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, 3, 3)
	newer := KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 7}
	ahead := &memKeyspaces{cfg: map[string]KeyspaceConfig{"ks": newer}}
	f.net.replicas["n3"] = NewReplica(f.net.engines["n3"], ahead, NewClock(nil))
	f.meta.onWait = func(uint64) { f.meta.set(newer) }
	f.cmeta.onWait = func(uint64) { f.cmeta.set(newer) }
	return f
}

// A replica's newer-epoch refusal makes the coordinator catch up even when
// the request won its quorum without that replica: the request succeeds,
// and the next ones go out at the new epoch instead of meeting the same
// refusal.
func TestWonRequestRefreshesEpoch(t *testing.T) {
	ctx := context.Background()
	t.Run("read", func(t *testing.T) {
		f := aheadFixture(t)
		// Every replica is asked (the fixture's read-repair chance is 1),
		// R=2 needs both n1 and n2, and they answer after n3 refused, so
		// the refusal is seen before the answer.
		f.net.mu.Lock()
		f.net.slow["n1"], f.net.slow["n2"] = 20*time.Millisecond, 20*time.Millisecond
		f.net.mu.Unlock()
		res, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Quorum})
		if err != nil || res.Epoch != 1 {
			t.Fatalf("Get = %+v, %v; want success at epoch 1 (won without n3)", res, err)
		}
		next, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Quorum})
		if err != nil || next.Epoch != 7 {
			t.Fatalf("next Get = epoch %d, %v; want it sent at epoch 7 after the refusal", next.Epoch, err)
		}
	})
	t.Run("write", func(t *testing.T) {
		f := aheadFixture(t)
		_, rcpt, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.Quorum})
		if err != nil || rcpt.Epoch != 1 {
			t.Fatalf("Put = %+v, %v; want success at epoch 1 (won without n3)", rcpt, err)
		}
		// n3's refusal may arrive after the answer.
		waitFor(t, "the coordinator to catch up with epoch 7", func() bool {
			ks, _ := f.cmeta.Keyspace("ks")
			return ks.Epoch == 7
		})
		_, rcpt, err = f.coord.Put(ctx, "ks", []byte("k"), []byte("w"), Consistency{Level: quorum.All})
		if err != nil || rcpt.Epoch != 7 {
			t.Fatalf("next Put = %+v, %v; want it sent at epoch 7", rcpt, err)
		}
	})
}

// Hints are stored only for a write that went out and took effect: an
// attempt every replica refused leaves none (a definite failure must stay
// one), while an acknowledged write has the hints of its dead replicas on
// disk when the client hears of it.
func TestWriteHintsOnlyOnceAcknowledged(t *testing.T) {
	ctx := context.Background()
	t.Run("refused everywhere: no hint", func(t *testing.T) {
		f := newFixture(t, 3, 3)
		f.net.setDown("n3", true)
		// The live replicas know an epoch the coordinator never reaches.
		f.meta.set(KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 9})
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, _, err := f.coord.Put(wctx, "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.One})
		if err == nil {
			t.Fatal("write refused by every replica succeeded")
		}
		if !errors.Is(err, ErrStaleEpoch) {
			t.Fatalf("error %v; want a stale-epoch failure", err)
		}
		if got := f.hints.Pending(); got != 0 {
			t.Errorf("%d hints stored for a write no replica accepted; want 0", got)
		}
	})
	t.Run("acknowledged: hints durable", func(t *testing.T) {
		f := newFixture(t, 3, 3)
		f.net.setDown("n2", true)
		f.net.setDown("n3", true)
		if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.One}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"n2", "n3"} {
			if got := f.hints.PendingFor(id); got != 1 {
				t.Errorf("hints for dead %s when the write was acknowledged: %d; want 1", id, got)
			}
		}
		recs, err := f.hints.engine.Scan(hintKeyspace, nil, nil, 0)
		if err != nil || len(recs) != 2 {
			t.Errorf("hint engine holds %d records, %v; want the 2 hints", len(recs), err)
		}
	})
}
