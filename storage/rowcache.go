package storage

// The row cache keeps decoded records of recently read and written keys in
// front of pebble. Under a skewed workload (YCSB's zipfian) most reads are of
// a few thousand hot keys, and a pebble point read costs an iterator over the
// memtables and the levels: 15–20% of a node's CPU under YCSB B and C in the
// profiles BENCHMARKS.md cites. The committer's read-before-write (last
// writer wins) consults it too.
//
// Coherence. The committer is the only writer, and a record enters the cache
// either from the committer (the record it just committed) or from a reader
// that missed and read pebble. The reader's copy may be older than what a
// concurrent commit is about to make visible, so the committer brackets every
// commit with a per-stripe sequence, like a seqlock: before the batch is
// applied it makes each touched stripe odd and drops the touched keys; after
// the batch is applied it fills in the records it wrote and makes the stripes
// even again. A reader notes its key's stripe before reading pebble and
// inserts what it read only if the stripe is still the same even number, so
// no reader can insert a record that a commit it overlapped has replaced, and
// no cached record is ever older than what pebble has already shown to a
// reader (a hit is never staler than a miss).

import (
	"hash/maphash"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// rowCacheStripes is the number of sequence stripes; keys that share one only
// make each other's reader inserts fail more often.
const rowCacheStripes = 1024

// rowCacheMaxRecord is the largest record (key and value) the cache keeps:
// large values would evict many small hot ones for one read.
const rowCacheMaxRecord = 16 << 10

// rowCacheEntryOverhead approximates what an entry costs beyond its key and
// value (list element, map slot, struct), for the byte budget.
const rowCacheEntryOverhead = 112

type cachedRow struct {
	version   Version
	tombstone bool
	value     []byte // owned; never handed out
}

func (r cachedRow) size(key string) int64 {
	return int64(len(key) + len(r.value) + rowCacheEntryOverhead)
}

// rowCache is a byte-bounded LRU of engine keys to records.
type rowCache struct {
	seed    maphash.Seed
	mu      sync.Mutex
	lru     *simplelru.LRU[string, cachedRow]
	bytes   int64
	budget  int64
	stripes [rowCacheStripes]uint64 // guarded by mu; odd while a commit touches the stripe

	hits, misses uint64 // guarded by mu
}

func newRowCache(budget int64) *rowCache {
	c := &rowCache{seed: maphash.MakeSeed(), budget: budget}
	// The LRU's own bound is a count; the byte budget is enforced in put.
	// Its eviction callback keeps the byte count right on every removal.
	lru, err := simplelru.NewLRU[string, cachedRow](int(max(budget/rowCacheEntryOverhead, 1)), func(k string, v cachedRow) {
		c.bytes -= v.size(k)
	})
	if err != nil {
		panic(err) // only for a non-positive size, which max rules out
	}
	c.lru = lru
	return c
}

func (c *rowCache) stripe(key []byte) int {
	return int(maphash.Bytes(c.seed, key) % rowCacheStripes)
}

// get returns the cached record of key (an engine key) and the stripe
// sequence a reader that missed must pass to fill.
func (c *rowCache) get(key []byte) (row cachedRow, ok bool, seq uint64) {
	s := c.stripe(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	row, ok = c.lru.Get(string(key))
	if ok {
		c.hits++
	} else {
		c.misses++
	}
	return row, ok, c.stripes[s]
}

// fill inserts what a reader read from pebble after get missed with seq,
// unless a commit touched the key's stripe meanwhile or was touching it then.
// found false caches the absence as nothing (absent keys are not cached).
func (c *rowCache) fill(key []byte, seq uint64, row cachedRow) {
	if seq%2 == 1 || len(key)+len(row.value) > rowCacheMaxRecord {
		return
	}
	s := c.stripe(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stripes[s] != seq {
		return
	}
	c.put(string(key), row)
}

// put adds or replaces an entry and evicts down to the budget; mu is held.
func (c *rowCache) put(key string, row cachedRow) {
	if old, ok := c.lru.Peek(key); ok {
		c.bytes -= old.size(key)
	}
	c.lru.Add(key, row)
	c.bytes += row.size(key)
	for c.bytes > c.budget {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// beginCommit marks the stripes of keys as being written and drops the keys,
// before the batch that writes them is applied. It returns the stripes to
// pass to endCommit.
func (c *rowCache) beginCommit(keys []string) []int {
	seen := make(map[int]bool, len(keys))
	var touched []int
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		s := int(maphash.String(c.seed, k) % rowCacheStripes)
		if !seen[s] {
			seen[s] = true
			touched = append(touched, s)
			c.stripes[s]++ // odd: readers of these stripes do not fill
		}
		c.lru.Remove(k)
	}
	return touched
}

// endCommit records what the applied batch wrote (a nil row: the key is
// gone, nothing to cache) and reopens the stripes. When the batch failed the
// committer passes no rows: the keys stay dropped, and readers refill them
// from pebble.
func (c *rowCache) endCommit(touched []int, keys []string, rows []*cachedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		if i < len(rows) && rows[i] != nil && len(k)+len(rows[i].value) <= rowCacheMaxRecord {
			c.put(k, *rows[i])
		}
	}
	for _, s := range touched {
		c.stripes[s]++ // even again
	}
}

// stats returns the cache's hit and miss counts and its size in bytes.
func (c *rowCache) stats() (hits, misses uint64, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.bytes
}
