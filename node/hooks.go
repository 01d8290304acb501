package node

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// testHooks are faults a node injects into itself on request, for the Jepsen
// harness and the tuner experiment. They exist only when the node was started
// with Config.UnsafeTestHooks, and are served on the HTTP address under
// /unsafe/: a production node never exposes them.
type testHooks struct {
	mu sync.Mutex
	// replyDelay delays this node's answers to peer requests (a slow replica).
	replyDelay time.Duration
	// linkDelay delays requests this node sends to a given peer, by node ID
	// ("*" for every peer): injected link latency.
	linkDelay map[string]time.Duration
	// clockOffset skews the node's hybrid logical clock source.
	clockOffset time.Duration
}

func (h *testHooks) peerDelay(to string) time.Duration {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d, ok := h.linkDelay[to]; ok {
		return d
	}
	return h.linkDelay["*"]
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replyDelayInterceptor delays the node's answers to peer requests.
func (h *testHooks) replyDelayInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if strings.HasPrefix(info.FullMethod, "/adaptkv.v1.Peer/") {
		h.mu.Lock()
		d := h.replyDelay
		h.mu.Unlock()
		sleepCtx(ctx, d)
	}
	return resp, err
}

// register serves the hooks:
//
//	POST /unsafe/clock?offset=-5s        skew the clock
//	POST /unsafe/slow?delay=50ms         delay replies to peers
//	POST /unsafe/link?to=n2&delay=20ms   delay requests to a peer (to=* for all)
//	POST /unsafe/drop-writes?on=true     acknowledge replica writes without storing them
//	POST /unsafe/tuner-force?every=3s    move adaptive keyspaces between safe configurations (0s: stop)
//	POST /unsafe/reset                   undo all of the above
func (h *testHooks) register(mux *http.ServeMux, n *Node) {
	dur := func(r *http.Request, name string) (time.Duration, error) {
		d, err := time.ParseDuration(r.URL.Query().Get(name))
		if err != nil {
			return 0, fmt.Errorf("parameter %s: %w", name, err)
		}
		return d, nil
	}
	handle := func(path string, f func(r *http.Request) error) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			if err := f(r); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			n.log.Warn("unsafe test hook applied", "hook", path, "query", r.URL.RawQuery)
			fmt.Fprintln(w, "ok")
		})
	}
	handle("/unsafe/clock", func(r *http.Request) error {
		d, err := dur(r, "offset")
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.clockOffset = d
		h.mu.Unlock()
		n.clock.SetSource(func() time.Time { return time.Now().Add(d) })
		return nil
	})
	handle("/unsafe/slow", func(r *http.Request) error {
		d, err := dur(r, "delay")
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.replyDelay = d
		h.mu.Unlock()
		return nil
	})
	handle("/unsafe/link", func(r *http.Request) error {
		d, err := dur(r, "delay")
		if err != nil {
			return err
		}
		to := r.URL.Query().Get("to")
		if to == "" {
			return fmt.Errorf("parameter to: a node ID or * is required")
		}
		h.mu.Lock()
		h.linkDelay[to] = d
		h.mu.Unlock()
		return nil
	})
	handle("/unsafe/drop-writes", func(r *http.Request) error {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err != nil {
			return fmt.Errorf("parameter on: %w", err)
		}
		n.replica.SetUnsafeDropWrites(on)
		return nil
	})
	handle("/unsafe/tuner-force", func(r *http.Request) error {
		d, err := dur(r, "every")
		if err != nil {
			return err
		}
		n.tuning.forceEvery.Store(int64(d))
		return nil
	})
	handle("/unsafe/reset", func(r *http.Request) error {
		n.tuning.forceEvery.Store(0)
		h.mu.Lock()
		h.replyDelay, h.clockOffset = 0, 0
		h.linkDelay = map[string]time.Duration{}
		h.mu.Unlock()
		n.clock.SetSource(time.Now)
		n.replica.SetUnsafeDropWrites(false)
		return nil
	})
}
