package bench

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gateStore holds every request until gate is closed, then answers at once,
// or fails with err when set.
type gateStore struct {
	nopStore
	gate chan struct{}
	err  error
}

func (g gateStore) wait() error {
	<-g.gate
	return g.err
}

func (g gateStore) Read(context.Context, string) error           { return g.wait() }
func (g gateStore) Update(context.Context, string, []byte) error { return g.wait() }

// An open loop keeps sending on schedule while the store stalls, and charges
// the requests sent during the stall for the time they waited, measured from
// when they were due: the coordinated omission a closed loop commits would
// record only the few requests in flight when the stall began.
func TestOpenLoopMeasuresFromIntendedTime(t *testing.T) {
	g := gateStore{gate: make(chan struct{})}
	time.AfterFunc(300*time.Millisecond, func() { close(g.gate) })
	cfg := Config{Workload: Workloads["a"], Records: 100, Seed: 1, Tick: 250 * time.Millisecond}
	steps := []RateStep{{Name: "slow", Rate: 100, Duration: 500 * time.Millisecond}, {Name: "fast", Rate: 200, Duration: 500 * time.Millisecond}}
	res, err := RunOpenLoop(context.Background(), g, cfg, steps, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d step results; want 2", len(res.Steps))
	}
	for i, want := range []int64{50, 100} {
		s := res.Steps[i]
		if s.Offered != want || s.Sent != want || s.Ops != want || s.Errors != 0 {
			t.Errorf("step %s: offered %d sent %d ok %d errors %d; want %d of each and no errors", s.Name, s.Offered, s.Sent, s.Ops, s.Errors, want)
		}
	}
	// The first request was due at 0 and answered after the 300 ms stall.
	if got := res.Steps[0].Latency.Max; got < 250 {
		t.Errorf("slowest latency %.1f ms; want the stall (300 ms) counted from the intended send time", got)
	}
	if res.MaxOutstanding < 20 {
		t.Errorf("at most %d requests outstanding; want the stall's backlog (about 30) in flight at once", res.MaxOutstanding)
	}
	if len(res.Timeline) != 4 || res.Timeline[0].Step != "slow" || res.Timeline[3].Step != "fast" {
		t.Errorf("timeline %+v; want 4 ticks, slow then fast", res.Timeline)
	}
	var offered int64
	for _, p := range res.Timeline {
		offered += p.Offered
	}
	if offered != 150 {
		t.Errorf("timeline offers %d operations; want 150", offered)
	}
}

// Requests the store sheds are counted as such, and an operation due while
// the bench has its maximum outstanding is not sent but counted.
func TestOpenLoopCountsShedAndBacklog(t *testing.T) {
	shed := gateStore{gate: make(chan struct{}), err: &KindError{Kind: overloadedKind, Err: status.Error(codes.ResourceExhausted, "overloaded")}}
	close(shed.gate)
	cfg := Config{Workload: Workloads["a"], Records: 100, Seed: 1}
	res, err := RunOpenLoop(context.Background(), shed, cfg, []RateStep{{Name: "x", Rate: 100, Duration: 200 * time.Millisecond}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Steps[0]; s.Errors != 20 || s.ErrorKinds[overloadedKind] != 20 || res.Timeline[0].Shed != 20 {
		t.Errorf("step %+v, tick %+v; want 20 shed", s, res.Timeline[0])
	}

	stuck := gateStore{gate: make(chan struct{})}
	time.AfterFunc(400*time.Millisecond, func() { close(stuck.gate) })
	res, err = RunOpenLoop(context.Background(), stuck, cfg, []RateStep{{Name: "x", Rate: 100, Duration: 200 * time.Millisecond}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Steps[0]
	if s.Sent != 5 || s.ErrorKinds["bench_backlog"] != 15 || s.Ops != 5 || res.MaxOutstanding != 5 {
		t.Errorf("step %+v, max outstanding %d; want 5 sent and answered, 15 not sent", s, res.MaxOutstanding)
	}
}

func TestOpenLoopRejectsBadSteps(t *testing.T) {
	for _, steps := range [][]RateStep{nil, {{Name: "zero", Rate: 0, Duration: time.Second}}, {{Name: "short", Rate: 10}}} {
		if _, err := RunOpenLoop(context.Background(), nopStore{}, Config{}, steps, 0); err == nil {
			t.Errorf("steps %+v accepted; want an error", steps)
		}
	}
}
