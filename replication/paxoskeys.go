package replication

// The coordinator's per-key Paxos bookkeeping: one Proposer per key at a
// time, the lease the last one left, and the highest ballot drawn.
//
// Why serialize a key's Proposers on one coordinator: they share its node
// id, and a ballot must carry one proposal; two of them refused by the same
// higher ballot would each draw one above it (paxos.NextBallot), the same
// ballot. Serialized, each draws above the last one's (Request.Above).
// Serializing also turns what would be dueling rounds of one coordinator's
// clients on a hot key into a queue, each op proposing under the lease the
// one before it left: one round trip each, no refusals. The SDK sends a
// key's conditional writes to one coordinator (its first live replica) so
// that this is where they meet.
//
// A lease (paxos.Lease) is valid for the replicas and epoch it was granted
// with; a Paxos read on this coordinator prepares above it, so it drops the
// lease. Entries of keys idle for paxosKeyIdle are forgotten (the lease
// with them: the next op prepares), and the map holds at most paxosKeysMax
// entries: beyond that the oldest idle ones go first.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/replication/paxos"
)

const (
	paxosKeysMax = 1 << 16
	paxosKeyIdle = 30 * time.Second
)

// paxosKeys is the coordinator's table of keys with Paxos bookkeeping.
type paxosKeys struct {
	mu       sync.Mutex
	m        map[string]*paxosKey
	releases uint64
}

// paxosKey is one key's bookkeeping. turn holds one token: the Proposer
// that holds it is the key's only one on this coordinator.
type paxosKey struct {
	name string
	turn chan struct{}
	// users counts the ops holding or waiting for the turn; an entry with
	// users is never forgotten.
	users int
	// The fields below belong to the holder of the turn.
	lease    *paxos.Lease
	replicas []string
	epoch    uint64
	above    paxos.Ballot
	// used is when the turn was last released (under paxosKeys.mu).
	used time.Time
}

// acquire waits for key's turn; the caller must release it.
func (t *paxosKeys) acquire(ctx context.Context, keyspace string, key []byte) (*paxosKey, error) {
	name := keyspace + "\x00" + string(key)
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]*paxosKey{}
	}
	k := t.m[name]
	if k == nil {
		if len(t.m) >= paxosKeysMax {
			t.evictLocked(time.Now())
		}
		k = &paxosKey{name: name, turn: make(chan struct{}, 1)}
		k.turn <- struct{}{}
		t.m[name] = k
	}
	k.users++
	t.mu.Unlock()
	select {
	case <-k.turn:
		return k, nil
	case <-ctx.Done():
		t.mu.Lock()
		k.users--
		t.mu.Unlock()
		return nil, fmt.Errorf("waiting for the key's earlier conditional writes on this node: %w", ctx.Err())
	}
}

// take returns the key's lease if it was granted for these replicas at
// this epoch, and clears it either way: a lease serves one op.
func (k *paxosKey) take(epoch uint64, replicas []string) *paxos.Lease {
	l := k.lease
	k.lease = nil
	if l == nil || k.epoch != epoch || !slices.Equal(k.replicas, replicas) {
		return nil
	}
	return l
}

// release records what the op that held the turn leaves (its lease, nil
// for none, and the highest ballot it drew) and passes the turn on.
func (t *paxosKeys) release(k *paxosKey, lease *paxos.Lease, drawn paxos.Ballot, epoch uint64, replicas []string) {
	k.lease, k.epoch, k.replicas = lease, epoch, replicas
	if k.above.Less(drawn) {
		k.above = drawn
	}
	t.mu.Lock()
	now := time.Now()
	k.used = now
	k.users--
	t.releases++
	if t.releases%4096 == 0 {
		t.evictLocked(now)
	}
	t.mu.Unlock()
	k.turn <- struct{}{}
}

// evictLocked forgets the entries idle for paxosKeyIdle and, if the table
// is still full, the older half of the idle ones. It runs when the table is
// full and every 4096 releases.
func (t *paxosKeys) evictLocked(now time.Time) {
	var idle []*paxosKey
	for name, k := range t.m {
		if k.users > 0 {
			continue
		}
		if now.Sub(k.used) > paxosKeyIdle {
			delete(t.m, name)
			continue
		}
		idle = append(idle, k)
	}
	if len(t.m) < paxosKeysMax {
		return
	}
	slices.SortFunc(idle, func(a, b *paxosKey) int { return a.used.Compare(b.used) })
	for _, k := range idle[:len(idle)/2] {
		delete(t.m, k.name)
	}
}
