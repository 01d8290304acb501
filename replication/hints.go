package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/storage"
)

// hintKeyspace is where hints live in the node's own engine. Its first byte
// keeps it apart from user keyspaces, whose names must start with a letter.
const hintKeyspace = "\x01hints"

// Hint store errors.
var (
	// ErrHintsFull is returned when the hint store is at its bound: the
	// write is then left to read repair for that replica.
	ErrHintsFull = errors.New("replication: hint store full")
	// ErrHintWindowPassed is returned for a target that has been
	// unreachable for longer than the maximum hint window: it needs a
	// repair when it returns, and hints would only fill the store.
	ErrHintWindowPassed = errors.New("replication: target unreachable for longer than the hint window")
)

// Hint store defaults.
const (
	// DefaultMaxHints is HintOptions.MaxHints's default: at 1 KiB a hint,
	// 1 GiB of disk.
	DefaultMaxHints = 1_000_000
	// DefaultMaxHintWindow is HintOptions.MaxWindow's default, Cassandra's
	// max_hint_window. A replica back within it catches up from hints
	// alone; one away longer needs anti-entropy anyway, since the hints it
	// missed since expired. Why not longer? A node that left for good
	// would hold hints for that long, and at a few hundred writes a second
	// a few hours of hints fill the store, after which every other down
	// replica's hints are dropped too. Why not shorter? Restarts, upgrades
	// and most outages end within an hour or two, and repairing a replica
	// costs far more than delivering its hints.
	DefaultMaxHintWindow = 3 * time.Hour
)

// hintPage is how many hints are read from the engine at once (when
// counting them at start, delivering and expiring them): the store never
// holds more than a page of hints in memory, at most hintPage times the
// largest value.
const hintPage = 128

// hintChunkBytes bounds one delivery RPC, within the peer's 4 MiB message
// limit (as repair's pushes are).
const hintChunkBytes = 2 << 20

// HintOptions configure a HintStore.
type HintOptions struct {
	// MaxHints bounds the hints kept, all targets together; beyond it new
	// hints are dropped and counted. Default DefaultMaxHints.
	MaxHints int
	// MaxWindow is how long a hint is kept undelivered, and how long a
	// target may stay unreachable and still be hinted: a hint older than
	// it is removed and counted in Expired, and a target whose hints have
	// been accumulating for longer gets no new ones (counted in Dropped)
	// until it has been reachable again. Default DefaultMaxHintWindow.
	MaxWindow time.Duration
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Now reads the wall clock (time.Now when nil); tests move it.
	Now func() time.Time
}

// HintStore keeps the writes a coordinator could not deliver to a replica,
// durably, in the node's own engine, and delivers them when the replica is
// alive again. A hint is stored at key target + 0x00 + sequence, where the
// sequence is the wall time of its writing in nanoseconds (made unique), so
// one target's hints are read back in the order they were written and the
// expired ones are a prefix. Only counters per target are kept in memory;
// hints are read from the engine a page at a time.
type HintStore struct {
	engine storage.Engine
	max    int
	window time.Duration
	now    func() time.Time
	log    *slog.Logger
	// timeout bounds one delivery RPC. 10 s: a batch of 256 hints is one
	// group commit on the replica, far below it even on a loaded disk.
	timeout time.Duration

	mu      sync.Mutex
	seq     uint64
	targets map[string]*hintTarget

	total     atomic.Int64
	delivered atomic.Uint64
	dropped   atomic.Uint64
	expired   atomic.Uint64
	wake      chan struct{}
}

// hintTarget is what the store keeps in memory about one target's hints.
// Its fields are guarded by HintStore.mu, except drain.
type hintTarget struct {
	// count is the number of hints stored.
	count int
	// oldest is the sequence of the oldest hint stored, 0 when unknown or
	// none (it is looked up when needed).
	oldest uint64
	// since is when the hints now accumulating for the target began: the
	// first hint after the target was last drained or seen alive with none.
	// Zero: none accumulating.
	since time.Time
	// drain serializes what removes the target's hints (delivery and
	// expiry), so that each hint is removed, and uncounted, once.
	drain sync.Mutex
}

// NewHintStore opens the hint store on engine, counting the hints a previous
// run left behind a page at a time (their values are not kept).
func NewHintStore(engine storage.Engine, opts HintOptions) (*HintStore, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxHints <= 0 {
		opts.MaxHints = DefaultMaxHints
	}
	if opts.MaxWindow <= 0 {
		opts.MaxWindow = DefaultMaxHintWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &HintStore{
		engine:  engine,
		max:     opts.MaxHints,
		window:  opts.MaxWindow,
		now:     opts.Now,
		log:     opts.Logger,
		timeout: 10 * time.Second,
		targets: map[string]*hintTarget{},
		seq:     uint64(opts.Now().UnixNano()),
		wake:    make(chan struct{}, 1),
	}
	var start []byte
	for {
		recs, err := engine.Scan(hintKeyspace, start, nil, hintPage)
		if err != nil {
			return nil, fmt.Errorf("count hints: %w", err)
		}
		for _, rec := range recs {
			target, seq, ok := splitHintKey(rec.Key)
			if !ok {
				continue
			}
			t := h.target(target)
			if t.count == 0 {
				// Keys are in order: the first is the target's oldest, and
				// its time the best estimate of when it became unreachable.
				t.oldest, t.since = seq, time.Unix(0, int64(seq))
			}
			t.count++
			h.total.Add(1)
			h.seq = max(h.seq, seq)
		}
		if len(recs) < hintPage {
			return h, nil
		}
		last := recs[len(recs)-1].Key
		start = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
}

// target returns target's state, creating it; h.mu must be held.
func (h *HintStore) target(id string) *hintTarget {
	t := h.targets[id]
	if t == nil {
		t = &hintTarget{}
		h.targets[id] = t
	}
	return t
}

// decodeHint decodes a stored hint. Protobuf decodes most damaged bytes
// (an empty value, say) into some mutation, so one without a keyspace or a
// key is refused too: every replica would refuse it, forever, and with it
// every hint stored behind it.
func decodeHint(b []byte, m *kvpb.Mutation) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return err
	}
	if ks := m.GetKeyspace(); ks == "" || strings.IndexByte(ks, 0) >= 0 || len(m.GetRecord().GetKey()) == 0 {
		return fmt.Errorf("hint for keyspace %q and key %q is no mutation a replica accepts", ks, m.GetRecord().GetKey())
	}
	return nil
}

func hintKey(target string, seq uint64) []byte {
	k := make([]byte, 0, len(target)+9)
	k = append(k, target...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func splitHintKey(k []byte) (target string, seq uint64, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || len(k)-i-1 != 8 {
		return "", 0, false
	}
	return string(k[:i]), binary.BigEndian.Uint64(k[i+1:]), true
}

// Add stores a hint for target. It returns once the hint is on disk.
func (h *HintStore) Add(ctx context.Context, target string, m *kvpb.Mutation) error {
	_, err := h.AddAll(ctx, []string{target}, m)
	return err
}

// AddAll stores a hint of m for each target, in one durable batch, and
// returns how many it stored. A target past the hint window, or the store
// at its bound, leaves that target's hint out (counted in Dropped) and the
// error says why; the others are stored.
func (h *HintStore) AddAll(ctx context.Context, targets []string, m *kvpb.Mutation) (int, error) {
	val, err := proto.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("encode hint: %w", err)
	}
	now := h.now()
	var refused error
	muts := make([]storage.Mutation, 0, len(targets))
	var took []string
	h.mu.Lock()
	for _, id := range targets {
		t := h.target(id)
		if !t.since.IsZero() && now.Sub(t.since) > h.window {
			h.dropped.Add(1)
			refused = fmt.Errorf("hint for %s (hinted since %s): %w", id, t.since.Format(time.RFC3339), ErrHintWindowPassed)
			continue
		}
		if h.total.Load() >= int64(h.max) {
			h.dropped.Add(1)
			refused = fmt.Errorf("hint for %s: %w", id, ErrHintsFull)
			continue
		}
		h.seq = max(h.seq+1, uint64(now.UnixNano()))
		if t.count == 0 {
			t.oldest = h.seq
		}
		if t.since.IsZero() {
			t.since = now
		}
		t.count++
		h.total.Add(1)
		took = append(took, id)
		muts = append(muts, storage.Mutation{Keyspace: hintKeyspace, Record: storage.Record{Key: hintKey(id, h.seq), Value: val, Version: storage.Version{Timestamp: h.seq}}})
	}
	h.mu.Unlock()
	if len(muts) == 0 {
		return 0, refused
	}
	if _, err := h.engine.Apply(ctx, muts); err != nil {
		h.mu.Lock()
		for _, id := range took {
			t := h.targets[id]
			t.count--
			t.oldest = 0
		}
		h.mu.Unlock()
		h.total.Add(-int64(len(took)))
		return 0, fmt.Errorf("store hints for %v: %w", took, err)
	}
	return len(muts), refused
}

// Pending is the number of hints stored, all targets together.
func (h *HintStore) Pending() int { return int(h.total.Load()) }

// Delivered is the number of hints delivered since the store was opened.
func (h *HintStore) Delivered() uint64 { return h.delivered.Load() }

// Dropped is the number of hints not stored: the store was full, or their
// target had been unreachable for longer than the hint window.
func (h *HintStore) Dropped() uint64 { return h.dropped.Load() }

// Expired is the number of hints removed undelivered because they were
// older than the hint window.
func (h *HintStore) Expired() uint64 { return h.expired.Load() }

// PendingFor is the number of hints stored for one target.
func (h *HintStore) PendingFor(target string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.targets[target]; t != nil {
		return t.count
	}
	return 0
}

// Wake asks the delivery loop to look for deliverable hints now, for
// example because gossip just reported a node alive. It never blocks.
func (h *HintStore) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// snapshot lists the targets with hints, and forgets when hints began for
// those alive with none left: they are reachable again, so a later outage
// starts a fresh window. (A target's state is kept once created: one small
// struct per node ever hinted.)
func (h *HintStore) snapshot(alive func(string) bool) []string {
	var with, idle []string
	h.mu.Lock()
	for id, t := range h.targets {
		switch {
		case t.count > 0:
			with = append(with, id)
		case !t.since.IsZero():
			idle = append(idle, id)
		}
	}
	h.mu.Unlock()
	for _, id := range idle {
		if !alive(id) {
			continue
		}
		h.mu.Lock()
		if t := h.targets[id]; t.count == 0 {
			t.since = time.Time{}
		}
		h.mu.Unlock()
	}
	return with
}

// Run delivers hints to targets that topo reports alive, and removes
// expired hints of every target, every interval and whenever Wake is
// called, until ctx ends. Each target is served by its own goroutine, one
// at a time per target, so a replica that gossip still reports alive but
// that does not answer holds up only its own hints.
func (h *HintStore) Run(ctx context.Context, t Transport, topo Topology, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var busy sync.Map // target -> struct{} while a delivery runs
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-h.wake:
		}
		for _, target := range h.snapshot(topo.Alive) {
			if _, running := busy.LoadOrStore(target, struct{}{}); running {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer busy.Delete(target)
				if n, err := h.Expire(ctx, target); err != nil {
					h.log.Warn("hint expiry failed", "target", target, "expired", n, "err", err)
				} else if n > 0 {
					h.log.Warn("hints expired undelivered: the replica needs a repair", "target", target, "expired", n, "window", h.window)
				}
				if !topo.Alive(target) {
					return
				}
				n, err := h.Deliver(ctx, t, target, 2*hintPage)
				if err != nil {
					h.log.Warn("hint delivery failed", "target", target, "delivered", n, "err", err)
				} else if n > 0 {
					h.log.Info("hints delivered", "target", target, "delivered", n)
				}
			}()
		}
	}
}

// cutoff is the sequence below which hints have expired.
func (h *HintStore) cutoff() uint64 {
	c := h.now().Add(-h.window).UnixNano()
	return uint64(max(c, 0))
}

// lock takes target's drain lock and returns its state.
func (h *HintStore) lock(target string) *hintTarget {
	h.mu.Lock()
	t := h.target(target)
	h.mu.Unlock()
	t.drain.Lock()
	return t
}

// removed uncounts n hints of t removed from the engine.
func (h *HintStore) removed(t *hintTarget, n int) {
	h.mu.Lock()
	t.count -= n
	t.oldest = 0
	h.mu.Unlock()
	h.total.Add(-int64(n))
}

// Expire removes target's hints older than the hint window, a page at a
// time, and returns how many it removed.
func (h *HintStore) Expire(ctx context.Context, target string) (int, error) {
	t := h.lock(target)
	defer t.drain.Unlock()
	cutoff := h.cutoff()
	h.mu.Lock()
	count, oldest := t.count, t.oldest
	h.mu.Unlock()
	if count == 0 || (oldest != 0 && oldest >= cutoff) {
		return 0, nil // nothing stored, or the oldest is within the window
	}
	prefix, end := append([]byte(target), 0), hintKey(target, cutoff)
	done := 0
	for {
		recs, err := h.engine.Scan(hintKeyspace, prefix, end, hintPage)
		if err != nil {
			return done, fmt.Errorf("read hints: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		keys := make([][]byte, len(recs))
		for i, rec := range recs {
			keys[i] = rec.Key
		}
		if err := h.engine.Purge(ctx, hintKeyspace, keys); err != nil {
			return done, fmt.Errorf("remove expired hints: %w", err)
		}
		h.removed(t, len(keys))
		h.expired.Add(uint64(len(keys)))
		done += len(keys)
	}
	// Learn the new oldest, so that the next pass knows at once whether
	// anything is due.
	if recs, err := h.engine.Scan(hintKeyspace, prefix, append([]byte(target), 1), 1); err == nil && len(recs) == 1 {
		if _, seq, ok := splitHintKey(recs[0].Key); ok {
			h.mu.Lock()
			t.oldest = seq
			h.mu.Unlock()
		}
	}
	return done, nil
}

// Drop removes every hint held for target, a page at a time, counted in
// Dropped, and returns how many it removed: for a member that has left the
// ring for good, whose hints nobody will ever take.
func (h *HintStore) Drop(ctx context.Context, target string) (int, error) {
	t := h.lock(target)
	defer t.drain.Unlock()
	prefix, end := append([]byte(target), 0), append([]byte(target), 1)
	done := 0
	for {
		recs, err := h.engine.Scan(hintKeyspace, prefix, end, hintPage)
		if err != nil {
			return done, fmt.Errorf("read hints: %w", err)
		}
		if len(recs) == 0 {
			return done, nil
		}
		keys := make([][]byte, len(recs))
		for i, rec := range recs {
			keys[i] = rec.Key
		}
		if err := h.engine.Purge(ctx, hintKeyspace, keys); err != nil {
			return done, fmt.Errorf("remove hints of %s: %w", target, err)
		}
		h.removed(t, len(keys))
		h.dropped.Add(uint64(len(keys)))
		done += len(keys)
	}
}

// Deliver sends target's hints, read a page of batch at a time, until none
// are left or a send fails, and returns how many were delivered. Hints
// older than the hint window are removed instead (counted in Expired). When
// it leaves none, the target's hint window starts afresh.
func (h *HintStore) Deliver(ctx context.Context, t Transport, target string, batch int) (int, error) {
	ts := h.lock(target)
	defer ts.drain.Unlock()
	prefix := append([]byte(target), 0)
	end := append([]byte(target), 1)
	cutoff := h.cutoff()
	done := 0
	for {
		recs, err := h.engine.Scan(hintKeyspace, prefix, end, batch)
		if err != nil {
			return done, fmt.Errorf("read hints: %w", err)
		}
		if len(recs) == 0 {
			h.mu.Lock()
			if ts.count == 0 {
				ts.since = time.Time{}
			}
			h.mu.Unlock()
			return done, nil
		}
		var muts []*kvpb.Mutation
		var sizes []int
		keys := make([][]byte, 0, len(recs))
		expired := 0
		counted := 0 // keys NewHintStore and Add counted as hints
		for _, rec := range recs {
			keys = append(keys, rec.Key)
			_, seq, ok := splitHintKey(rec.Key)
			if !ok {
				// Damage that merely shares the target's prefix: never
				// counted, never deliverable; remove it.
				h.log.Error("dropping malformed hint key", "target", target, "key", rec.Key)
				continue
			}
			counted++
			if seq < cutoff {
				expired++
				continue
			}
			m := &kvpb.Mutation{}
			if err := decodeHint(rec.Value, m); err != nil {
				// A hint we cannot decode can never be delivered; drop it
				// rather than block the ones behind it.
				h.log.Error("dropping undecodable hint", "target", target, "err", err)
				continue
			}
			muts = append(muts, m)
			sizes = append(sizes, len(rec.Value))
		}
		for len(muts) > 0 {
			n, size := 0, 0
			for n < len(muts) && (n == 0 || size+sizes[n] <= hintChunkBytes) {
				size += sizes[n]
				n++
			}
			req := &kvpb.ReplicaWriteRequest{Mutations: muts[:n]}
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			resp, err := t.Hint(cctx, target, req)
			cancel()
			if err != nil {
				return done, err
			}
			for i, r := range resp.GetResults() {
				if !r.GetOk() {
					return done, fmt.Errorf("replica %s refused hint %d: %s", target, i, r.GetError())
				}
			}
			h.delivered.Add(uint64(n))
			done += n
			muts, sizes = muts[n:], sizes[n:]
		}
		if err := h.engine.Purge(ctx, hintKeyspace, keys); err != nil {
			return done, fmt.Errorf("remove delivered hints: %w", err)
		}
		h.removed(ts, counted)
		h.expired.Add(uint64(expired))
	}
}
