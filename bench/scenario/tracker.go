package scenario

import (
	"hash/maphash"
	"sort"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// Tracker is the bench client's memory of its own acknowledged writes, per
// key, with which it judges whether a read was stale. It is safe for
// concurrent use.
//
// A read is stale when it began after some write of its key was
// acknowledged and returned an older version than that write's, or nothing.
// Writes acknowledged after the read began do not count, however early they
// were sent: the read may or may not see them, and both are correct.
type Tracker struct {
	// Keep is how long acknowledgements are remembered beyond the newest
	// one before them; it must exceed the longest read. Default 30s.
	Keep time.Duration

	seed   maphash.Seed
	shards [64]trackerShard
}

type trackerShard struct {
	mu   sync.Mutex
	keys map[string][]ackEntry
}

// ackEntry is a write's acknowledgement: when the client saw it, and the
// newest version acknowledged for the key up to then (a running maximum, so
// that a write acknowledged late with an older version than one before it
// does not lower what reads must see).
type ackEntry struct {
	at  time.Time
	max client.Version
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	t := &Tracker{Keep: 30 * time.Second, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].keys = map[string][]ackEntry{}
	}
	return t
}

func (t *Tracker) shard(key string) *trackerShard {
	return &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
}

// Acked records that a write of key was acknowledged with version v at
// time at (when the client got the reply).
func (t *Tracker) Acked(key string, v client.Version, at time.Time) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.keys[key]
	// Acknowledgements from concurrent workers may be recorded out of
	// order; keep the log sorted by time.
	i := sort.Search(len(log), func(i int) bool { return log[i].at.After(at) })
	e := ackEntry{at: at, max: v}
	if i > 0 && v.Less(log[i-1].max) {
		e.max = log[i-1].max
	}
	log = append(log, ackEntry{})
	copy(log[i+1:], log[i:])
	log[i] = e
	for j := i + 1; j < len(log); j++ {
		if log[j].max.Less(v) {
			log[j].max = v
		}
	}
	// Forget what no read can still need: everything before the newest
	// entry older than Keep.
	cutoff := log[len(log)-1].at.Add(-t.Keep)
	k := sort.Search(len(log), func(i int) bool { return !log[i].at.Before(cutoff) })
	if k > 1 {
		log = append(log[:0], log[k-1:]...)
	}
	s.keys[key] = log
}

// Check judges a read of key that began at start and returned got (found
// false: nothing). It reports whether the read was stale and, if so, its
// age: how long before the read began the first write it missed was
// acknowledged.
func (t *Tracker) Check(key string, start time.Time, found bool, got client.Version) (stale bool, age time.Duration) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.keys[key]
	// The acknowledgements strictly before the read began.
	n := sort.Search(len(log), func(i int) bool { return !log[i].at.Before(start) })
	if n == 0 {
		return false, 0
	}
	want := log[n-1].max
	if found && !got.Less(want) {
		return false, 0
	}
	// The first acknowledgement the answer is older than; max is
	// non-decreasing, so search.
	first := sort.Search(n, func(i int) bool { return !found || got.Less(log[i].max) })
	return true, start.Sub(log[first].at)
}
