package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A closed loop of 256 callers on one Client against a real three-node
// cluster whose nodes admit 8 client requests at once: the callers wait for
// the nodes' windows in the client instead of being refused, so every call
// succeeds and the nodes shed only the few requests that taught the client
// their bound. Over the Batch stream and unary.
func TestWindowClosedLoop(t *testing.T) {
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.InMemory = true
		o.Configure = func(i int, cfg *node.Config) { cfg.MaxInflight = 8 }
	})
	const callers, perCaller = 256, 6
	for _, tt := range []struct {
		name      string
		batchless bool
	}{{"batch", false}, {"unary", true}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), DisableBatching: tt.batchless, DisableHedging: true})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if _, err := cl.Put(ctx, []byte("warm"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			shedBefore := shedTotal(t, c)
			var wg sync.WaitGroup
			var failed, overloaded atomic.Int64
			var firstErr atomic.Value
			for g := range callers {
				wg.Go(func() {
					for i := range perCaller {
						key := fmt.Appendf(nil, "%s-%d-%d", tt.name, g, i)
						_, err := cl.Put(ctx, key, []byte("v"))
						if err == nil {
							_, err = cl.Get(ctx, key)
						}
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
							if errors.Is(err, client.ErrOverloaded) {
								overloaded.Add(1)
							}
						}
					}
				})
			}
			wg.Wait()
			if failed.Load() > 0 {
				t.Errorf("%d of %d caller iterations failed (%d overloaded); first: %v", failed.Load(), callers*perCaller, overloaded.Load(), firstErr.Load())
			}
			// Each node's window starts at 32 against a bound of 8: at most
			// one window's excess per node is refused before the client
			// learns the bound, and a few more as it probes past it.
			shed := shedTotal(t, c) - shedBefore
			t.Logf("%d calls, nodes shed %v", 2*callers*perCaller, shed)
			if limit := 3 * 32.0; shed > limit {
				t.Errorf("nodes shed %v requests; want at most %v", shed, limit)
			}
		})
	}
}

// shedTotal sums the nodes' adaptkv_requests_shed_total.
func shedTotal(t *testing.T, c *clustertest.Cluster) float64 {
	t.Helper()
	var sum float64
	for i := range c.Len() {
		resp, err := http.Get("http://" + c.Node(i).Addrs().HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "adaptkv_requests_shed_total "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatal(err)
				}
				sum += f
			}
		}
	}
	return sum
}
