package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/tuner"
	"github.com/adaptkv/adaptkv/tuner/rollout"
)

// These tests drive the executor with scripted implementations of its
// interfaces: a metadata log that applies what it is given, members that
// confirm (or never confirm) an index, a repair pass that succeeds or
// fails, and a clock that moves only when the executor waits. Every call
// is written to one event list, so that a test states the order of a
// plan's steps, waits and passes as the spec (tuner.Step's obligations)
// gives it.

// script is the executor's world.
type script struct {
	mu     sync.Mutex
	events []string
	now    time.Time
	epoch  uint64
	config map[string]rollout.Config
	// proposeErr, when set, may refuse a proposal.
	proposeErr func(c rollout.Config) error
	// repairErr, when set, may fail a pass.
	repairErr func(ctx context.Context, rf int) error
	// cleanupErr, when set, may fail a cleanup.
	cleanupErr func() error
	// members and when each says it has applied an index: lag[id] more
	// polls after the first (-1: never).
	members []rollout.Member
	lag     map[string]int
	polls   map[string]int
	ring    int
	// frozen makes After never fire.
	frozen bool
}

func newScript(in rollout.Config) *script {
	return &script{now: time.Unix(1_700_000_000, 0), epoch: 10, config: map[string]rollout.Config{in.Keyspace: in},
		members: []rollout.Member{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}, lag: map[string]int{}, polls: map[string]int{}, ring: 5}
}

func (s *script) event(format string, args ...any) {
	s.events = append(s.events, fmt.Sprintf(format, args...))
}

func (s *script) Propose(ctx context.Context, c rollout.Config) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	unrep := "-"
	if c.State != nil && len(c.State.Unrepaired) > 0 {
		unrep = fmt.Sprint(c.State.Unrepaired)
	}
	if s.proposeErr != nil {
		if err := s.proposeErr(c); err != nil {
			s.event("propose %v pending=%d: refused", c.Policy, c.PendingN)
			return 0, err
		}
	}
	s.epoch++
	s.config[c.Keyspace] = c
	s.event("propose %v hedge=%v pending=%d unrepaired=%s -> epoch %d", c.Policy, c.HedgeAfter, c.PendingN, unrep, s.epoch)
	return s.epoch, nil
}

func (s *script) InForce(name string) (rollout.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.config[name]
	if !ok {
		return rollout.Config{}, fmt.Errorf("keyspace %q not found", name)
	}
	return c, nil
}

func (s *script) RingSize() int { return s.ring }

func (s *script) Members() []rollout.Member { return slices.Clone(s.members) }

func (s *script) Applied(ctx context.Context, id string, index uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fmt.Sprintf("%s@%d", id, index)
	s.polls[key]++
	lag := s.lag[id]
	return lag >= 0 && s.polls[key] > lag
}

func (s *script) Repair(ctx context.Context, keyspace string, rf int) (rollout.RepairResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repairErr != nil {
		if err := s.repairErr(ctx, rf); err != nil {
			s.event("repair rf=%d: %v", rf, err)
			return rollout.RepairResult{}, err
		}
	}
	s.event("repair rf=%d", rf)
	return rollout.RepairResult{ReplicationFactor: rf, Nodes: 3}, nil
}

func (s *script) Cleanup(ctx context.Context, keyspace string) (rollout.CleanupResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cleanupErr != nil {
		if err := s.cleanupErr(); err != nil {
			s.event("cleanup %s: %v", keyspace, err)
			return rollout.CleanupResult{}, err
		}
	}
	s.event("cleanup %s at N=%d", keyspace, s.config[keyspace].Policy.N)
	return rollout.CleanupResult{Nodes: 3, KeysScanned: 500, KeysRemoved: 200}, nil
}

func (s *script) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *script) After(d time.Duration) <-chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return nil
	}
	s.now = s.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- s.now
	return ch
}

const lease = 4*time.Second + 500*time.Millisecond

func (s *script) executor() *rollout.Executor {
	return &rollout.Executor{Log: s, Cluster: s, Repairer: s, Cleaner: s, Clock: s, LeaseWait: lease}
}

func pol(n, r, w int) tuner.Policy { return tuner.Policy{N: n, R: r, W: w, Read: tuner.ReadNearest} }

// apply runs a decision's plan from the policy in force to to, with the
// keyspace's writes since its last pass also made under unrepaired.
func (s *script) apply(t *testing.T, floor tuner.Floor, from, to tuner.Policy, unrepaired []tuner.Policy) (tuner.State, error) {
	t.Helper()
	prev := tuner.NewState(from)
	prev.Unrepaired = unrepaired
	st, _, err := s.applyFrom(floor, prev, to)
	return st, err
}

// applyFrom runs a decision's plan from prev, the state in force, to to,
// and returns what Apply does.
func (s *script) applyFrom(floor tuner.Floor, prev tuner.State, to tuner.Policy) (tuner.State, string, error) {
	next := prev
	next.Policy = to
	dec := tuner.Decision{From: prev.Policy, To: to, Changed: true, Plan: tuner.PlanAfter(prev.Unrepaired, prev.Policy, to)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.executor().Apply(ctx, rollout.Keyspace{Name: "ks", Epoch: s.epoch, Floor: floor}, dec, prev, next)
}

func checkEvents(t *testing.T, s *script, want ...string) {
	t.Helper()
	if !slices.Equal(s.events, want) {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(s.events, "\n  "), strings.Join(want, "\n  "))
	}
}

// Under a quorum floor, writes acknowledged at W=1 since the last pass
// (unrepaired) may sit on one replica, so one pass runs before the step
// that lowers R, and the state recorded with it forgets them; a second
// pass after the step would find nothing (the executor ran one until the
// lowering step was compared with itself). Under a `one` floor nothing is
// repaired.
func TestApplyRepairsBeforeLowering(t *testing.T) {
	from, to := pol(3, 3, 3), pol(3, 2, 3)
	weak := []tuner.Policy{pol(3, 3, 1)}
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from})
	st, err := s.apply(t, tuner.FloorQuorum, from, to, weak)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, s,
		"repair rf=0",
		"propose custom(N=3 R=2 W=3 nearest) hedge=0s pending=0 unrepaired=- -> epoch 11",
	)
	if st.Policy != to || len(st.Unrepaired) != 0 {
		t.Errorf("state %+v; want %v in force, nothing unrepaired", st, to)
	}

	s = newScript(rollout.Config{Keyspace: "ks", Policy: from})
	st, err = s.apply(t, tuner.FloorOne, from, to, weak)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, s, "propose custom(N=3 R=2 W=3 nearest) hedge=0s pending=0 unrepaired=[custom(N=3 R=3 W=1)] -> epoch 11")
	if st.Policy != to || !slices.Equal(st.Unrepaired, []tuner.Policy{{N: 3, R: 3, W: 1}}) {
		t.Errorf("state %+v; want %v in force, the W=1 writes still unrepaired", st, to)
	}
}

// A step that only raises a quorum, but whose reads would miss writes made
// under a weaker configuration since the last pass, is committed at once
// (it is safer than the one it replaces) and repaired right after every
// member applied it; it is recorded unrepaired until then.
func TestApplyRepairsAfterRaising(t *testing.T) {
	from, to := pol(3, 2, 2), pol(3, 2, 3)
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from})
	s.lag["n2"] = 2
	st, err := s.apply(t, tuner.FloorQuorum, from, to, []tuner.Policy{{N: 3, R: 1, W: 1}})
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, s,
		"propose custom(N=3 R=2 W=3 nearest) hedge=0s pending=0 unrepaired=[one(N=3 R=1 W=1) quorum(N=3 R=2 W=2)] -> epoch 11",
		"repair rf=0",
	)
	if s.polls["n2@11"] != 3 {
		t.Errorf("n2 asked %d times about the step; want 3 (the pass waits until it applied it)", s.polls["n2@11"])
	}
	if st.Policy != to || len(st.Unrepaired) != 0 {
		t.Errorf("state %+v; want %v in force, nothing unrepaired", st, to)
	}
}

// A plan of two steps waits for every member between them; a step the
// log refuses stops the plan there.
func TestApplyStopsAtFailedStep(t *testing.T) {
	from, to := pol(3, 2, 2), pol(3, 1, 3)
	plan := tuner.Plan(from, to)
	if len(plan) != 2 {
		t.Fatalf("plan %v: want a joint step and the lowering one", plan)
	}
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from})
	errNoLeader := errors.New("no metadata leader")
	s.proposeErr = func(c rollout.Config) error {
		if c.Policy == to {
			return errNoLeader
		}
		return nil
	}
	_, err := s.apply(t, tuner.FloorOne, from, to, nil)
	if !errors.Is(err, errNoLeader) || !strings.HasPrefix(err.Error(), "step 2 (custom(N=3 R=1 W=3 nearest)): ") {
		t.Fatalf("plan with a refused step 2: %v; want step 2's refusal", err)
	}
	if c, _ := s.InForce("ks"); c.Policy != plan[0].Policy {
		t.Errorf("in force %v; want step 1's %v", c.Policy, plan[0].Policy)
	}
	checkEvents(t, s,
		"propose custom(N=3 R=2 W=3 nearest) hedge=0s pending=0 unrepaired=[quorum(N=3 R=2 W=2)] -> epoch 11",
		"propose custom(N=3 R=1 W=3 nearest) pending=0: refused",
	)
	// Between the steps every member was asked about step 1's epoch.
	for _, id := range []string{"n1", "n2", "n3"} {
		if s.polls[id+"@11"] == 0 {
			t.Errorf("%s never asked whether it applied step 1", id)
		}
	}
}

// Growing N streams first: PendingN is announced and applied everywhere,
// a pass fills the new N, and only then is the grown step committed. The
// announcement keeps the configuration in force, hedge delay included.
func TestApplyGrowStreamsFirst(t *testing.T) {
	from := tuner.Policy{N: 3, R: 2, W: 2, Read: tuner.ReadHedged}
	to := tuner.Policy{N: 5, R: 3, W: 3, Read: tuner.ReadHedged}
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from, HedgeAfter: 7 * time.Millisecond})
	prev := tuner.NewState(from)
	next := prev
	next.Policy = to
	// The grown step raises W to 4 so that reads under it meet writes
	// under the policy before (2 + 4 > 5); both steps hedge after the
	// chosen candidate's delay.
	dec := tuner.Decision{From: from, To: to, Changed: true, Plan: tuner.Plan(from, to), Chosen: &tuner.CandidateReport{}}
	dec.Chosen.HedgeAfter = 9 * time.Millisecond
	st, _, err := s.executor().Apply(context.Background(), rollout.Keyspace{Name: "ks", Epoch: 10, Floor: tuner.FloorQuorum}, dec, prev, next)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, s,
		"propose quorum(N=3 R=2 W=2 hedged) hedge=7ms pending=5 unrepaired=- -> epoch 11",
		"repair rf=5",
		"propose custom(N=5 R=3 W=4 hedged) hedge=9ms pending=0 unrepaired=[quorum(N=3 R=2 W=2)] -> epoch 12",
		"propose quorum(N=5 R=3 W=3 hedged) hedge=9ms pending=0 unrepaired=[quorum(N=3 R=2 W=2)] -> epoch 13",
	)
	if st.Policy != to {
		t.Errorf("state in force %v; want %v", st.Policy, to)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if s.polls[id+"@11"] == 0 || s.polls[id+"@12"] == 0 {
			t.Errorf("%s never asked whether it applied PendingN before the pass, or the grown step before the next", id)
		}
	}
}

// A grow whose pass cannot finish clears PendingN again, even when the
// plan's context ended with the pass, and leaves N where it was, saying so.
func TestApplyGrowAbandoned(t *testing.T) {
	from, to := pol(3, 2, 2), pol(5, 3, 3)
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.repairErr = func(context.Context, int) error {
		cancel() // the tuner loop is stopping as the pass fails
		return errors.New("node n4 could not complete its part")
	}
	prev := tuner.NewState(from)
	next := prev
	next.Policy = to
	dec := tuner.Decision{From: from, To: to, Changed: true, Plan: tuner.Plan(from, to)}
	st, _, err := s.executor().Apply(ctx, rollout.Keyspace{Name: "ks", Epoch: 10, Floor: tuner.FloorQuorum}, dec, prev, next)
	if err == nil || !strings.Contains(err.Error(), "N stays at 3") || !strings.Contains(err.Error(), "n4") {
		t.Fatalf("grow with a failed pass: %v; want N staying at 3, naming the pass's failure", err)
	}
	checkEvents(t, s,
		"propose quorum(N=3 R=2 W=2 nearest) hedge=0s pending=5 unrepaired=- -> epoch 11",
		"repair rf=5: node n4 could not complete its part",
		"propose quorum(N=3 R=2 W=2 nearest) hedge=0s pending=0 unrepaired=- -> epoch 12",
	)
	if st.Policy != from {
		t.Errorf("state in force %v; want %v", st.Policy, from)
	}
	if c, _ := s.InForce("ks"); c.PendingN != 0 || c.Policy != from {
		t.Errorf("in force after the failed grow: %+v; want %v with no pending N", c, from)
	}
}

// A shrink of N is cleaned up on every node once it is in force
// everywhere, after which N may grow again at once, however long ago the
// shrink was.
func TestApplyShrinkCleansThenGrowAllowed(t *testing.T) {
	big, small := pol(5, 3, 3), pol(3, 2, 2)
	s := newScript(rollout.Config{Keyspace: "ks", Policy: big})
	st, note, err := s.applyFrom(tuner.FloorQuorum, tuner.NewState(big), small)
	if err != nil {
		t.Fatal(err)
	}
	// The shrink is the last step and is not waited for as a step: the
	// cleanup waits for it, then runs at the N in force.
	i := slices.Index(s.events, "cleanup ks at N=3")
	if i < 0 || !strings.Contains(s.events[i-1], "N=3") || s.polls[fmt.Sprintf("n3@%d", s.epoch)] == 0 {
		t.Fatalf("events %v, polls %v; want the cleanup at N=3 right after the shrink, once applied everywhere", s.events, s.polls)
	}
	if !st.ShrunkAt.IsZero() || st.CleanupError != "" {
		t.Errorf("state after a completed cleanup: shrunk at %v, %q; want no cleanup owed", st.ShrunkAt, st.CleanupError)
	}
	if !strings.Contains(note, "Cleaned up after N shrank from 5") || !strings.Contains(note, "removed 200") {
		t.Errorf("note %q; want it to say the cleanup ran", note)
	}
	// Long after: the grow goes ahead.
	s.now = s.now.Add(30 * 24 * time.Hour)
	s.events = nil
	st, note, err = s.applyFrom(tuner.FloorQuorum, st, big)
	if err != nil {
		t.Fatalf("grow after a cleaned shrink: %v", err)
	}
	if st.Policy.N != 5 || note != "" || slices.ContainsFunc(s.events, func(e string) bool { return strings.HasPrefix(e, "cleanup") }) {
		t.Errorf("grow: state N=%d, note %q, events %v; want N=5 and no cleanup", st.Policy.N, note, s.events)
	}
}

// A cleanup that cannot complete (a node down) leaves the shrink in force
// and the cleanup owed, with the reason: a grow is refused, naming it,
// before anything is proposed. Once a retry completes, the grow goes ahead.
func TestApplyCleanupOwedRefusesGrow(t *testing.T) {
	big, small := pol(5, 3, 3), pol(3, 2, 2)
	s := newScript(rollout.Config{Keyspace: "ks", Policy: big})
	down := errors.New("node n3 is down")
	s.cleanupErr = func() error { return down }
	st, note, err := s.applyFrom(tuner.FloorQuorum, tuner.NewState(big), small)
	if err != nil {
		t.Fatalf("a failed cleanup failed the plan: %v", err)
	}
	if st.Policy != small || st.ShrunkAt.IsZero() || st.ShrunkFrom != 5 || !strings.Contains(st.CleanupError, "n3 is down") {
		t.Fatalf("state %v shrunk at %v from %d, %q; want N=3 with the cleanup owed naming n3", st.Policy, st.ShrunkAt, st.ShrunkFrom, st.CleanupError)
	}
	if !strings.Contains(note, "owed") || !strings.Contains(note, "n3 is down") {
		t.Errorf("note %q; want it to say the cleanup is owed and why", note)
	}

	s.events = nil
	_, _, err = s.applyFrom(tuner.FloorQuorum, st, big)
	if !errors.Is(err, rollout.ErrCleanupOwed) || !strings.Contains(err.Error(), "n3 is down") {
		t.Fatalf("grow with a cleanup owed: %v; want ErrCleanupOwed naming the reason", err)
	}
	if len(s.events) != 0 {
		t.Errorf("a refused grow still did: %v", s.events)
	}

	// A later decision retries: still failing keeps it owed; succeeding
	// clears it.
	e := s.executor()
	if _, err := e.Cleanup(context.Background(), "ks", &st); !errors.Is(err, down) || st.ShrunkAt.IsZero() {
		t.Fatalf("failed retry: %v, shrunk at %v; want the error and the cleanup still owed", err, st.ShrunkAt)
	}
	s.cleanupErr = nil
	note, err = e.Cleanup(context.Background(), "ks", &st)
	if err != nil || !st.ShrunkAt.IsZero() || st.CleanupError != "" || !strings.Contains(note, "Cleaned up") {
		t.Fatalf("retry: %v, shrunk at %v %q, note %q; want it done and nothing owed", err, st.ShrunkAt, st.CleanupError, note)
	}
	if err := e.GrowAllowed(st); err != nil {
		t.Fatalf("grow after the retried cleanup: %v", err)
	}
	if st, _, err = s.applyFrom(tuner.FloorQuorum, st, big); err != nil || st.Policy.N != 5 {
		t.Fatalf("grow after the retried cleanup: N=%d, %v", st.Policy.N, err)
	}
	// Nothing owed: Cleanup does nothing.
	s.events = nil
	if note, err := e.Cleanup(context.Background(), "ks", &st); note != "" || err != nil || len(s.events) != 0 {
		t.Errorf("cleanup with none owed: %q, %v, events %v; want nothing", note, err, s.events)
	}
}

// A member that never says it applied an index holds up a step only until
// one lease wait has passed since the commit: after that it holds no lease
// from before the step. A member that answers late is waited for. A
// member that left is not waited for once the lease is over.
func TestWaitAppliedLeaseExpiry(t *testing.T) {
	tests := []struct {
		name    string
		lag     map[string]int
		left    string
		minWait time.Duration
		maxWait time.Duration
	}{
		{"every member applied", nil, "", 0, 0},
		{"one answers after 5 polls", map[string]int{"n2": 5}, "", 5 * 20 * time.Millisecond, 5 * 20 * time.Millisecond},
		{"one never answers", map[string]int{"n3": -1}, "", lease, lease + 20*time.Millisecond},
		{"one left and never answers", map[string]int{"n3": -1}, "n3", lease, lease + 20*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScript(rollout.Config{Keyspace: "ks", Policy: pol(3, 2, 2)})
			for id, l := range tt.lag {
				s.lag[id] = l
			}
			for i := range s.members {
				s.members[i].Left = s.members[i].ID == tt.left
			}
			committed := s.now
			if err := s.executor().WaitApplied(context.Background(), 42, committed); err != nil {
				t.Fatal(err)
			}
			if waited := s.now.Sub(committed); waited < tt.minWait || waited > tt.maxWait {
				t.Errorf("waited %v; want %v to %v", waited, tt.minWait, tt.maxWait)
			}
		})
	}
	// The wait may also end with the caller: it names a member it was
	// waiting for.
	s := newScript(rollout.Config{Keyspace: "ks", Policy: pol(3, 2, 2)})
	s.lag["n2"], s.frozen = -1, true
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.executor().WaitApplied(ctx, 42, s.now); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "node n2 has not applied metadata index 42") {
		t.Errorf("wait with the caller gone: %v; want it naming n2 and context.Canceled", err)
	}
}

// A plan waits, before its first step, for the configuration in force,
// which the previous plan's last step may not have waited for.
func TestApplyWaitsForConfigurationInForce(t *testing.T) {
	from, to := pol(3, 2, 2), pol(3, 3, 2)
	s := newScript(rollout.Config{Keyspace: "ks", Policy: from})
	s.lag["n3"] = -1
	_, err := s.apply(t, tuner.FloorQuorum, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.polls["n3@10"] == 0 {
		t.Error("n3 never asked about the configuration in force (epoch 10)")
	}
	if waited := s.now.Sub(time.Unix(1_700_000_000, 0)); waited < lease {
		t.Errorf("the plan went ahead %v after it began with n3 silent; want at least the lease wait %v", waited, lease)
	}
}

// Clearing a PendingN left behind needs the keyspace: an unknown one is an
// error, and nothing is proposed.
func TestSetPendingUnknownKeyspace(t *testing.T) {
	s := newScript(rollout.Config{Keyspace: "ks", Policy: pol(3, 2, 2)})
	if err := s.executor().SetPending(context.Background(), "nope", 0, nil); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("SetPending of an unknown keyspace: %v; want an error naming it", err)
	}
	if len(s.events) != 0 {
		t.Errorf("events %v; want none", s.events)
	}
}
