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

// ErrHintsFull is returned when the hint store is at its bound: the write is
// then left to read repair for that replica.
var ErrHintsFull = errors.New("replication: hint store full")

// HintStore keeps the writes a coordinator could not deliver to a replica,
// durably, in the node's own engine, and delivers them when the replica is
// alive again. A hint is stored at key target + 0x00 + sequence, so one
// target's hints are read back in the order they were written.
type HintStore struct {
	engine storage.Engine
	max    int
	log    *slog.Logger
	// timeout bounds one delivery RPC. 10 s: a batch of 256 hints is one
	// group commit on the replica, far below it even on a loaded disk.
	timeout time.Duration

	mu      sync.Mutex
	seq     uint64
	pending map[string]int // hints stored per target node

	total     atomic.Int64
	delivered atomic.Uint64
	dropped   atomic.Uint64
	wake      chan struct{}
}

// NewHintStore opens the hint store on engine, counting the hints a previous
// run left behind. max bounds the number of hints kept (all targets
// together); beyond it new hints are dropped and counted.
func NewHintStore(engine storage.Engine, max int, log *slog.Logger) (*HintStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &HintStore{
		engine:  engine,
		max:     max,
		log:     log,
		timeout: 10 * time.Second,
		pending: map[string]int{},
		// Sequence numbers only need to grow across restarts: start from the
		// wall clock in nanoseconds, far above any count of hints per run.
		seq:  uint64(time.Now().UnixNano()),
		wake: make(chan struct{}, 1),
	}
	recs, err := engine.Scan(hintKeyspace, nil, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("count hints: %w", err)
	}
	for _, rec := range recs {
		target, _, ok := splitHintKey(rec.Key)
		if !ok {
			continue
		}
		h.pending[target]++
		h.total.Add(1)
	}
	return h, nil
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
	if h.total.Load() >= int64(h.max) {
		h.dropped.Add(1)
		return ErrHintsFull
	}
	val, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode hint: %w", err)
	}
	h.mu.Lock()
	h.seq++
	seq := h.seq
	h.pending[target]++
	h.mu.Unlock()
	h.total.Add(1)
	rec := storage.Record{Key: hintKey(target, seq), Value: val, Version: storage.Version{Timestamp: seq}}
	if _, err := h.engine.Apply(ctx, []storage.Mutation{{Keyspace: hintKeyspace, Record: rec}}); err != nil {
		h.mu.Lock()
		h.pending[target]--
		h.mu.Unlock()
		h.total.Add(-1)
		return fmt.Errorf("store hint for %s: %w", target, err)
	}
	return nil
}

// Pending is the number of hints stored, all targets together.
func (h *HintStore) Pending() int { return int(h.total.Load()) }

// Delivered is the number of hints delivered since the store was opened.
func (h *HintStore) Delivered() uint64 { return h.delivered.Load() }

// Dropped is the number of hints not stored because the store was full.
func (h *HintStore) Dropped() uint64 { return h.dropped.Load() }

// PendingFor is the number of hints stored for one target.
func (h *HintStore) PendingFor(target string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending[target]
}

// Wake asks the delivery loop to look for deliverable hints now, for
// example because gossip just reported a node alive. It never blocks.
func (h *HintStore) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *HintStore) targets() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []string
	for t, n := range h.pending {
		if n > 0 {
			ts = append(ts, t)
		}
	}
	return ts
}

// Run delivers hints to targets that topo reports alive, every interval and
// whenever Wake is called, until ctx ends. Each target is served by its own
// goroutine, one at a time per target, so a replica that gossip still
// reports alive but that does not answer holds up only its own hints.
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
		for _, target := range h.targets() {
			if !topo.Alive(target) {
				continue
			}
			if _, running := busy.LoadOrStore(target, struct{}{}); running {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer busy.Delete(target)
				n, err := h.Deliver(ctx, t, target, 256)
				if err != nil {
					h.log.Warn("hint delivery failed", "target", target, "delivered", n, "err", err)
				} else if n > 0 {
					h.log.Info("hints delivered", "target", target, "delivered", n)
				}
			}()
		}
	}
}

// Deliver sends target's hints in batches of batch until none are left or a
// batch fails, and returns how many were delivered.
func (h *HintStore) Deliver(ctx context.Context, t Transport, target string, batch int) (int, error) {
	prefix := append([]byte(target), 0)
	end := append([]byte(target), 1)
	done := 0
	for {
		recs, err := h.engine.Scan(hintKeyspace, prefix, end, batch)
		if err != nil {
			return done, fmt.Errorf("read hints: %w", err)
		}
		if len(recs) == 0 {
			return done, nil
		}
		req := &kvpb.ReplicaWriteRequest{Mutations: make([]*kvpb.Mutation, 0, len(recs))}
		keys := make([][]byte, 0, len(recs))
		counted := 0 // keys NewHintStore and Add counted as hints
		for _, rec := range recs {
			if _, _, ok := splitHintKey(rec.Key); !ok {
				// Damage that merely shares the target's prefix: never
				// counted, never deliverable; remove it.
				h.log.Error("dropping malformed hint key", "target", target, "key", rec.Key)
				keys = append(keys, rec.Key)
				continue
			}
			counted++
			m := &kvpb.Mutation{}
			if err := decodeHint(rec.Value, m); err != nil {
				// A hint we cannot decode can never be delivered; drop it
				// rather than block the ones behind it.
				h.log.Error("dropping undecodable hint", "target", target, "err", err)
				keys = append(keys, rec.Key)
				continue
			}
			req.Mutations = append(req.Mutations, m)
			keys = append(keys, rec.Key)
		}
		if len(req.Mutations) > 0 {
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
		}
		if err := h.engine.Purge(ctx, hintKeyspace, keys); err != nil {
			return done, fmt.Errorf("remove delivered hints: %w", err)
		}
		h.mu.Lock()
		h.pending[target] -= counted
		h.mu.Unlock()
		h.total.Add(-int64(counted))
		h.delivered.Add(uint64(len(req.Mutations)))
		done += len(req.Mutations)
	}
}
