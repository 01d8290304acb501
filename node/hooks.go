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

	"github.com/adaptkv/adaptkv/tuner"
)

// testHooks are faults a node injects into itself on request, for the Jepsen
// harness and the tuner experiment. They exist only when the node was started
// with Config.UnsafeTestHooks, and are served on the HTTP address under
// /unsafe/: a production node never exposes them.
type testHooks struct {
	mu sync.Mutex
	// replyDelay delays this node's answers to peer requests (a slow replica).
	replyDelay time.Duration
	// clientDelay delays this node's answers to clients' KV requests (a
	// slow coordinator).
	clientDelay time.Duration
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

// clientDelayInterceptor delays the node's answers to clients' KV calls.
func (h *testHooks) clientDelayInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if strings.HasPrefix(info.FullMethod, "/adaptkv.v1.KV/") {
		sleepCtx(ctx, h.clientReplyDelay())
	}
	return resp, err
}

func (h *testHooks) clientReplyDelay() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clientDelay
}

// clientDelayStream delays every message the node sends on a client's KV
// stream (the SDK's Batch stream carries its Gets and Puts).
func (h *testHooks) clientDelayStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, "/adaptkv.v1.KV/") {
		return handler(srv, ss)
	}
	return handler(srv, delayedStream{ss, h})
}

type delayedStream struct {
	grpc.ServerStream
	h *testHooks
}

func (s delayedStream) SendMsg(m any) error {
	sleepCtx(s.Context(), s.h.clientReplyDelay())
	return s.ServerStream.SendMsg(m)
}

// register serves the hooks:
//
//	POST /unsafe/clock?offset=-5s        skew the clock
//	POST /unsafe/slow?delay=50ms         delay replies to peers
//	POST /unsafe/slow?delay=50ms&to=clients  delay replies to clients' KV calls
//	                                     instead (to=all: both)
//	POST /unsafe/link?to=n2&delay=20ms   delay requests to a peer (to=* for all)
//	POST /unsafe/drop-writes?on=true     acknowledge replica writes without storing them
//	POST /unsafe/tuner-force?every=3s    move adaptive keyspaces between safe configurations (0s: stop)
//	POST /unsafe/tuner-target?keyspace=ks&n=5&r=3&w=3&read=nearest
//	                                     move one adaptive keyspace there at the leader's next decision
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
		defer h.mu.Unlock()
		switch to := r.URL.Query().Get("to"); to {
		case "", "peers":
			h.replyDelay = d
		case "clients":
			h.clientDelay = d
		case "all":
			h.replyDelay, h.clientDelay = d, d
		default:
			return fmt.Errorf("parameter to: %q is not peers, clients or all", to)
		}
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
	handle("/unsafe/tuner-target", func(r *http.Request) error {
		q := r.URL.Query()
		var p tuner.Policy
		for name, v := range map[string]*int{"n": &p.N, "r": &p.R, "w": &p.W} {
			x, err := strconv.Atoi(q.Get(name))
			if err != nil {
				return fmt.Errorf("parameter %s: %w", name, err)
			}
			*v = x
		}
		p.Read = tuner.ReadNearest
		if s := q.Get("read"); s != "" {
			var err error
			if p.Read, err = tuner.ParseReadPath(s); err != nil {
				return fmt.Errorf("parameter read: %w", err)
			}
		}
		d, ok := n.meta.Def(q.Get("keyspace"))
		switch {
		case !ok || d.Adaptive == nil:
			return fmt.Errorf("parameter keyspace: %q is not an adaptive keyspace here", q.Get("keyspace"))
		case !p.Valid() || p.N < d.Adaptive.MinRF || p.N > d.Adaptive.MaxRF:
			return fmt.Errorf("%v is not valid within the goal's N %d..%d", p, d.Adaptive.MinRF, d.Adaptive.MaxRF)
		case d.Adaptive.Floor == tuner.FloorQuorum && !p.Overlapping():
			return fmt.Errorf("%v breaks the keyspace's quorum floor", p)
		}
		n.tuning.mu.Lock()
		n.tuning.targets[d.Name] = p
		n.tuning.mu.Unlock()
		return nil
	})
	handle("/unsafe/reset", func(r *http.Request) error {
		n.tuning.forceEvery.Store(0)
		n.tuning.mu.Lock()
		n.tuning.targets = map[string]tuner.Policy{}
		n.tuning.mu.Unlock()
		h.mu.Lock()
		h.replyDelay, h.clientDelay, h.clockOffset = 0, 0, 0
		h.linkDelay = map[string]time.Duration{}
		h.mu.Unlock()
		n.clock.SetSource(time.Now)
		n.replica.SetUnsafeDropWrites(false)
		return nil
	})
}
