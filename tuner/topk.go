package tuner

import (
	"cmp"
	"slices"
)

// TopK finds the most frequent keys of a stream in bounded memory with the
// Space-Saving algorithm (Metwally, Agrawal and El Abbadi, "Efficient
// computation of frequent and top-k elements in data streams", ICDT 2005).
// It keeps m = 4k counters and reports the k largest. A key that is not
// tracked replaces the key with the smallest count and inherits that count
// as its error, so every reported count overestimates the true one by at
// most its Err (itself at most Total/m), and any key whose true frequency
// exceeds Total/m is guaranteed to be tracked. Why 4k counters and not k?
// The counters always sum to Total, so with only k of them the "share of
// the top k" would be 1 for any stream; the spare counters absorb the churn
// of the long tail and leave the top k's counts nearly exact.
//
// Keys are 64-bit hashes: the tuner needs how skewed a keyspace is, not which
// keys are hot, and hashes keep memory fixed whatever the key sizes.
//
// Finding the minimum is a linear scan of the counters. The stream-summary
// structure of the paper makes it O(1), but for the 64 counters the tuner uses a
// scan of one cache-resident slice is as fast and far simpler. TopK is not
// safe for concurrent use; the Recorder samples keys into a ring with atomics
// and feeds them to a TopK when it takes a snapshot.
type TopK struct {
	k     int // keys reported
	m     int // counters kept
	items []KeyCount
	index map[uint64]int // key → position in items
	total uint64
}

// KeyCount is one tracked key: its estimated count, and the most by which
// the estimate may exceed the truth.
type KeyCount struct {
	Key   uint64 `json:"key"`   // the key's hash
	Count uint64 `json:"count"` // estimated occurrences, never below the truth
	Err   uint64 `json:"err"`   // Count − Err never exceeds the truth
}

// NewTopK returns a TopK reporting the k most frequent keys (k is raised to
// 1 if smaller), with 4k counters.
func NewTopK(k int) *TopK {
	k = max(k, 1)
	return &TopK{k: k, m: 4 * k, items: make([]KeyCount, 0, 4*k), index: make(map[uint64]int, 4*k)}
}

// Add counts n occurrences of key.
func (t *TopK) Add(key uint64, n uint64) {
	if n == 0 {
		return
	}
	t.total += n
	if i, ok := t.index[key]; ok {
		t.items[i].Count += n
		return
	}
	if len(t.items) < t.m {
		t.index[key] = len(t.items)
		t.items = append(t.items, KeyCount{Key: key, Count: n})
		return
	}
	m := 0
	for i := 1; i < len(t.items); i++ {
		if t.items[i].Count < t.items[m].Count {
			m = i
		}
	}
	old := t.items[m]
	delete(t.index, old.Key)
	t.index[key] = m
	t.items[m] = KeyCount{Key: key, Count: old.Count + n, Err: old.Count}
}

// Total is the number of occurrences counted.
func (t *TopK) Total() uint64 { return t.total }

// Top returns the k most frequent keys, most frequent first (ties by key,
// so the order is deterministic).
func (t *TopK) Top() []KeyCount {
	out := slices.Clone(t.items)
	slices.SortFunc(out, func(a, b KeyCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out[:min(len(out), t.k)]
}

// Share estimates the fraction of the stream that went to the k most
// frequent keys: ΣCount/Total over Top(). It errs high by at most
// ΣErr/Total; for a uniform stream over many keys it is about k/distinct
// keys plus that error, for a skewed one it approaches the hot set's share.
func (t *TopK) Share() float64 {
	if t.total == 0 {
		return 0
	}
	var s uint64
	for _, it := range t.Top() {
		s += it.Count
	}
	return min(1, float64(s)/float64(t.total))
}

// GuaranteedShare is a lower bound on the fraction of the stream that went
// to the keys Top() reports: Σ(Count−Err)/Total.
func (t *TopK) GuaranteedShare() float64 {
	if t.total == 0 {
		return 0
	}
	var s uint64
	for _, it := range t.Top() {
		s += it.Count - it.Err
	}
	return float64(s) / float64(t.total)
}

// Skew summarises how concentrated a keyspace's traffic is on a few keys.
type Skew struct {
	// K is the number of keys tracked.
	K int `json:"k"`
	// Sampled is the number of key accesses the estimate is based on.
	Sampled uint64 `json:"sampled"`
	// TopShare is the estimated fraction of accesses that went to the K
	// hottest keys (TopK.Share).
	TopShare float64 `json:"top_share"`
}

// SkewOf summarises a TopK.
func SkewOf(t *TopK) Skew {
	return Skew{K: t.k, Sampled: t.total, TopShare: t.Share()}
}

// merge combines two skew summaries, weighting each share by its sample
// count. Hot sets of different intervals may differ, so this is an average
// of concentration, not the share of one fixed key set.
func (s Skew) merge(o Skew) Skew {
	n := s.Sampled + o.Sampled
	if n == 0 {
		return Skew{K: max(s.K, o.K)}
	}
	return Skew{
		K:        max(s.K, o.K),
		Sampled:  n,
		TopShare: (s.TopShare*float64(s.Sampled) + o.TopShare*float64(o.Sampled)) / float64(n),
	}
}
