package replication

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/replication/quorum"
)

// A scan covers every token range with R answering replicas or fails
// naming what it could not cover: a key whose only holders do not answer
// must fail the scan, not vanish from it. Reference: Cassandra's range
// reads, which fail a range whose replicas fall short of the level.
func TestScanCoversEveryRange(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 5, 3)
	key := []byte("k")
	replicas := f.net.Ring().PreferenceList("ks", key, 3)
	a, b, x := replicas[0], replicas[1], replicas[2]
	// x is down while k is written at quorum: only a and b hold it (x has
	// a hint, not delivered).
	f.net.setDown(x, true)
	if _, _, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{Level: quorum.Quorum}); err != nil {
		t.Fatal(err)
	}
	f.net.setDown(x, false)
	// Now a and b stop answering while gossip still reports them alive.
	f.net.mu.Lock()
	f.net.broken[a], f.net.broken[b] = true, true
	f.net.mu.Unlock()

	res, err := f.coord.Scan(ctx, "ks", nil, nil, 100, Consistency{Level: quorum.Quorum})
	if !errors.Is(err, ErrQuorumNotReached) {
		t.Fatalf("scan with two of k's replicas not answering = %d records (k found: %v), %v; want ErrQuorumNotReached", len(res.Records), len(res.Records) > 0, err)
	}
	var qe *QuorumError
	if !errors.As(err, &qe) || qe.Required != 2 || qe.Answered > 1 {
		t.Fatalf("error %#v; want a QuorumError with fewer than 2 of 2 answering", err)
	}
	for _, want := range []string{"token ranges have fewer than 2 replicas answering", "lacks", a, b, "connection refused"} {
		if !strings.Contains(qe.Detail, want) {
			t.Errorf("detail %q does not say %q", qe.Detail, want)
		}
	}
	// At one, every range has an answering replica: the scan answers, as a
	// read of k at one from x would.
	if _, err := f.coord.Scan(ctx, "ks", nil, nil, 100, Consistency{Level: quorum.One}); err != nil {
		t.Errorf("scan at one: %v", err)
	}
}

// A scan that loses its coverage to replicas knowing a newer epoch catches
// up and runs again, as reads do.
func TestScanEpochRefusalAndRetry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	newer := KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 7}
	f.meta.set(newer)
	f.cmeta.onWait = func(uint64) { f.cmeta.set(newer) }
	res, err := f.coord.Scan(ctx, "ks", nil, nil, 10, Consistency{})
	if err != nil {
		t.Fatalf("scan after the replicas moved to epoch 7: %v", err)
	}
	if len(res.Records) != 1 || res.Epoch != 7 {
		t.Errorf("scan = %d records at epoch %d; want 1 at epoch 7", len(res.Records), res.Epoch)
	}
	if got := f.coord.Metrics().EpochRetries.Load(); got != 1 {
		t.Errorf("epoch retries = %d; want 1", got)
	}
}
