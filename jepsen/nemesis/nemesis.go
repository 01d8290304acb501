package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/cluster"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// Nemesis applies faults to a cluster and records them in the history.
type Nemesis struct {
	c   *cluster.Cluster
	net *cluster.Net // nil when partitions are not in use
	rec *history.Recorder
	log *slog.Logger

	// partitionGen counts partitions, so that a gossip watcher stops when
	// its partition is undone.
	partitionGen atomic.Int64
	watchers     sync.WaitGroup

	mu sync.Mutex
	// Faults applied and not yet undone, by kind.
	active map[string]history.Fault
	errs   []error
	// changes describe the membership changes as they settled; started
	// holds when each change began, by the node it added or took off;
	// leaving holds the nodes asked to leave and not yet removed.
	changes []string
	started map[string]time.Time
	leaving map[string]bool
}

// New returns a Nemesis. net may be nil if no partition is scheduled.
func New(c *cluster.Cluster, net *cluster.Net, rec *history.Recorder, log *slog.Logger) *Nemesis {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Nemesis{c: c, net: net, rec: rec, log: log, active: map[string]history.Fault{}, started: map[string]time.Time{}, leaving: map[string]bool{}}
}

// Active returns the kinds of the faults now in effect, sorted.
func (n *Nemesis) Active() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.active {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Changes describes each membership change the nemesis made and how it
// settled (or why it did not), in order.
func (n *Nemesis) Changes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.changes)
}

// Errors returns the faults that could not be applied or undone.
func (n *Nemesis) Errors() []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]error(nil), n.errs...)
}

func (n *Nemesis) record(typ history.Type, f string, fault history.Fault, err error) {
	op := history.Op{Process: history.NemesisProcess, Client: history.NemesisProcess, Type: typ, F: f, Fault: &fault}
	if err != nil {
		op.Error = err.Error()
	}
	n.rec.Append(op)
}

// Run follows the schedule: windows' offsets count from the call. It
// returns when the last window has ended or ctx ends, leaving nothing
// active that it started.
func (n *Nemesis) Run(ctx context.Context, windows []Window) {
	start := time.Now()
	for _, w := range windows {
		if !sleepUntil(ctx, start.Add(w.Start)) {
			return
		}
		for _, f := range w.Faults {
			n.Start(ctx, f)
		}
		ok := sleepUntil(ctx, start.Add(w.End))
		// Undo the network first (a restarted node cannot rejoin through a
		// partition), then the processes, then the hooks.
		undo := slices.Clone(w.Faults)
		slices.SortStableFunc(undo, func(a, b history.Fault) int { return undoOrder(a.Kind) - undoOrder(b.Kind) })
		for _, f := range undo {
			n.Stop(context.WithoutCancel(ctx), f)
		}
		if !ok {
			return
		}
	}
}

func undoOrder(kind string) int {
	switch kind {
	case Partition:
		return 0
	case Pause:
		return 1
	case Kill:
		return 2
	case Membership:
		// Last: waiting for a joined node to become normal needs the
		// network whole and the killed nodes back.
		return 4
	}
	return 3
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Wait waits for the background observers of partitions to finish; they
// end when their partition is undone or the context of Run or Start ends.
func (n *Nemesis) Wait() { n.watchers.Wait() }

// Start applies a fault and records it (invoke, then info with what was
// done and how it was verified, or the error).
func (n *Nemesis) Start(ctx context.Context, f history.Fault) error {
	name := "start-" + f.Kind
	n.record(history.Invoke, name, f, nil)
	err := n.apply(ctx, &f)
	n.record(history.Info, name, f, err)
	n.mu.Lock()
	n.active[f.Kind] = f
	if err != nil {
		n.errs = append(n.errs, fmt.Errorf("%s: %w", name, err))
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Warn("fault not fully applied", "fault", f.Kind, "err", err)
	} else {
		n.log.Info("fault applied", "fault", f.Kind, "shape", f.Shape, "targets", f.Targets, "offset", f.Offset, "delay", f.Delay)
	}
	return err
}

// Stop undoes a fault and records it.
func (n *Nemesis) Stop(ctx context.Context, f history.Fault) error {
	name := "stop-" + f.Kind
	n.record(history.Invoke, name, f, nil)
	err := n.undo(ctx, &f)
	n.record(history.Info, name, f, err)
	n.mu.Lock()
	delete(n.active, f.Kind)
	if f.Kind == Membership {
		change := fmt.Sprintf("%s %s: %s", f.Shape, strings.Join(f.Targets, "+"), f.Verified)
		if err != nil {
			change = fmt.Sprintf("%s %s failed: %v", f.Shape, strings.Join(f.Targets, "+"), err)
		}
		n.changes = append(n.changes, change)
	}
	if err != nil {
		n.errs = append(n.errs, fmt.Errorf("%s: %w", name, err))
	}
	n.mu.Unlock()
	return err
}

func (n *Nemesis) forTargets(f *history.Fault, do func(id string) error) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range f.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := do(id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *Nemesis) hook(ctx context.Context, f *history.Fault, hook string, params url.Values) error {
	return n.forTargets(f, func(id string) error {
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return n.c.Hook(hctx, id, hook, params)
	})
}

func (n *Nemesis) apply(ctx context.Context, f *history.Fault) error {
	switch f.Kind {
	case Kill:
		return n.forTargets(f, n.c.Kill)
	case Pause:
		return n.forTargets(f, n.c.Pause)
	case Partition:
		if n.net == nil {
			return errors.New("partition scheduled without iptables (no network control)")
		}
		if err := n.net.Partition(ctx, f.Grudge); err != nil {
			return err
		}
		proof, err := n.c.VerifyPartition(ctx, f.Grudge)
		if err != nil {
			return err
		}
		f.Verified = proof
		n.watchGossip(ctx, *f)
		return nil
	case Clock:
		return n.hook(ctx, f, "clock", url.Values{"offset": {f.Offset}})
	case Slow:
		return n.hook(ctx, f, "slow", url.Values{"delay": {f.Delay}})
	case DropWrites:
		return n.hook(ctx, f, "drop-writes", url.Values{"on": {"true"}})
	case Membership:
		return n.changeMembership(ctx, f)
	}
	return fmt.Errorf("unknown fault %q", f.Kind)
}

func (n *Nemesis) undo(ctx context.Context, f *history.Fault) error {
	switch f.Kind {
	case Kill:
		// Restart, and wait until the process serves (its HTTP endpoint
		// answers, healthy or not): whether it rejoins the cluster is the
		// system's business, which the heal phase checks.
		return n.forTargets(f, func(id string) error {
			if err := n.c.StartNode(id); err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for wctx.Err() == nil {
				err := n.c.Healthz(wctx, id)
				if err == nil || strings.Contains(err.Error(), "503") {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return fmt.Errorf("%s restarted but not serving within 10s", id)
		})
	case Pause:
		return n.forTargets(f, n.c.Resume)
	case Partition:
		if n.net == nil {
			return nil
		}
		n.partitionGen.Add(1)
		if err := n.net.Heal(ctx); err != nil {
			return err
		}
		proof, err := n.c.VerifyPartition(ctx, cluster.Grudge{})
		f.Verified = proof
		return err
	case Clock:
		return n.hook(ctx, f, "clock", url.Values{"offset": {"0s"}})
	case Slow:
		return n.hook(ctx, f, "slow", url.Values{"delay": {"0s"}})
	case DropWrites:
		return n.hook(ctx, f, "drop-writes", url.Values{"on": {"false"}})
	case Membership:
		return n.settleMembership(ctx, f)
	}
	return fmt.Errorf("unknown fault %q", f.Kind)
}

// JoinTimeout bounds the wait for an added node to become normal on the
// ring, at its window's end and again in HealAll.
const JoinTimeout = 90 * time.Second

// changeMembership starts a membership change. Each action has a start
// here and a settle in settleMembership.
func (n *Nemesis) changeMembership(ctx context.Context, f *history.Fault) error {
	switch f.Shape {
	case MembershipAdd:
		return n.addNode(ctx, f)
	case MembershipDecommission:
		return n.decommission(ctx, f)
	case MembershipReplace:
		return n.replace(ctx, f)
	}
	return fmt.Errorf("membership:%s: unknown action", f.Shape)
}

// settleMembership waits until the change is in force: for add, the new
// node is normal on the ring; for decommission, the node has left it and
// its process has exited; for replace, the new node is normal and the dead
// one left.
func (n *Nemesis) settleMembership(ctx context.Context, f *history.Fault) error {
	wctx, cancel := context.WithTimeout(ctx, JoinTimeout)
	defer cancel()
	switch f.Shape {
	case MembershipAdd:
		if len(f.Targets) != 1 || n.c.Node(f.Targets[0]) == nil {
			return fmt.Errorf("membership:add: no node %v was added", f.Targets)
		}
		proof, err := n.waitNormal(wctx, f.Targets[0])
		f.Verified = proof
		return err
	case MembershipDecommission:
		if len(f.Targets) != 1 || !n.isLeaving(f.Targets[0]) {
			return fmt.Errorf("membership:decommission: %v was not asked to leave", f.Targets)
		}
		proof, err := n.finishLeave(wctx, f.Targets[0])
		f.Verified = proof
		return err
	case MembershipReplace:
		if len(f.Targets) != 2 || n.c.Node(f.Targets[1]) == nil {
			return fmt.Errorf("membership:replace: no node %v was started in a dead one's place", f.Targets)
		}
		dead, nu := f.Targets[0], f.Targets[1]
		proof, err := n.waitNormal(wctx, nu)
		if err != nil {
			f.Verified = proof
			return fmt.Errorf("membership:replace: %w", err)
		}
		left, err := n.waitLeft(wctx, dead)
		f.Verified = proof + "; " + left
		return err
	}
	return fmt.Errorf("membership:%s: unknown action", f.Shape)
}

// decommissionAttempts bounds the time spent asking for a decommission:
// the node asked may be cut off from the metadata leader by the window's
// partition, and the window's other faults wait meanwhile.
const decommissionAttempts = 20 * time.Second

// decommission asks the cluster to decommission the live node the schedule
// chose, through the other nodes, as `adaptkv cluster remove ID` does
// (cluster.Decommission runs `adaptkv node decommission`), and returns
// once the ring marks it leaving: it then streams its ranges while the
// window's other faults go on.
func (n *Nemesis) decommission(ctx context.Context, f *history.Fault) error {
	if len(f.Targets) != 1 {
		return fmt.Errorf("membership:decommission: targets %v, want the one node to take off", f.Targets)
	}
	id := f.Targets[0]
	start := time.Now()
	var state string
	var err error
	for try := 0; ; try++ {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		state, err = n.c.Decommission(dctx, id, try)
		cancel()
		if err == nil || !errors.Is(err, cluster.ErrRetryable) || time.Since(start) > decommissionAttempts || ctx.Err() != nil {
			break
		}
		n.log.Info("decommission not taken yet; asking again", "node", id, "err", err)
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("membership:decommission %s: %w", id, err)
	}
	n.mu.Lock()
	n.started[id] = start
	n.leaving[id] = true
	n.mu.Unlock()
	f.Verified = fmt.Sprintf("%s %s %.1fs after the request", id, state, time.Since(start).Seconds())
	return nil
}

// isLeaving says whether node id was asked to leave and has not been
// removed yet.
func (n *Nemesis) isLeaving(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaving[id]
}

// exitWait is how long a node that has left the ring has to end its own
// process (as cmd/adaptkv's cluster remove allows) before it is stopped.
const exitWait = 20 * time.Second

// finishLeave waits until the leaving node id has left the ring and its
// process has exited (stopping it if it has not within exitWait), then
// marks it removed: it is not restarted, not a seed, and not waited for.
func (n *Nemesis) finishLeave(ctx context.Context, id string) (string, error) {
	proof, err := n.waitLeft(ctx, id)
	if err != nil {
		return proof, err
	}
	node := n.c.Node(id)
	how := "its process exited by itself"
	deadline := time.Now().Add(exitWait)
	for node.State() != cluster.Stopped && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if node.State() != cluster.Stopped {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := n.c.Stop(sctx, id)
		cancel()
		if err != nil {
			return proof, fmt.Errorf("%s left the ring but its process did not exit, even when stopped: %w", id, err)
		}
		how = fmt.Sprintf("its process did not exit within %v and was stopped", exitWait)
		n.mu.Lock()
		n.errs = append(n.errs, fmt.Errorf("membership:decommission: %s left the ring and %s", id, how))
		n.mu.Unlock()
	}
	if err := n.c.MarkRemoved(id); err != nil {
		return proof, err
	}
	n.mu.Lock()
	delete(n.leaving, id)
	n.mu.Unlock()
	return proof + "; " + how, nil
}

// replace SIGKILLs the dead node the schedule chose, marks it removed (it
// never starts again), and starts the next node with --replace DEAD_ID,
// returning once it serves HTTP: it then asks the cluster for the dead
// node's place (retrying until gossip sees the dead one dead) and is
// streamed to while the window's other faults go on.
func (n *Nemesis) replace(ctx context.Context, f *history.Fault) error {
	if len(f.Targets) != 2 {
		return fmt.Errorf("membership:replace: targets %v, want the dead node and its replacement", f.Targets)
	}
	dead := f.Targets[0]
	n.mu.Lock()
	n.started[dead] = time.Now()
	n.mu.Unlock()
	if n.c.Node(dead).State() != cluster.Stopped {
		if err := n.c.Kill(dead); err != nil {
			return fmt.Errorf("membership:replace: %w", err)
		}
	}
	if err := n.c.MarkRemoved(dead); err != nil {
		return fmt.Errorf("membership:replace: %w", err)
	}
	node, err := n.c.AddReplacement("", dead)
	if err != nil {
		return fmt.Errorf("membership:replace: %w", err)
	}
	proof, err := n.startNew(ctx, node, f.Targets[1])
	if err != nil {
		return fmt.Errorf("membership:replace: %w", err)
	}
	f.Verified = fmt.Sprintf("%s SIGKILLed; %s with --replace %s", dead, proof, dead)
	return nil
}

// addNode lays out the next node (the schedule named it), makes its
// address known to the partitions, starts it with --bootstrap-expect 0
// and the others as seeds, and returns once it serves HTTP: the metadata
// leader then proposes it as joining and it streams its ranges while the
// window's other faults go on.
func (n *Nemesis) addNode(ctx context.Context, f *history.Fault) error {
	if len(f.Targets) != 1 {
		return fmt.Errorf("membership:add: targets %v, want the one node to add", f.Targets)
	}
	node, err := n.c.AddNode("")
	if err != nil {
		return fmt.Errorf("membership:add: %w", err)
	}
	proof, err := n.startNew(ctx, node, f.Targets[0])
	if err != nil {
		return fmt.Errorf("membership:add: %w", err)
	}
	f.Verified = proof
	return nil
}

// startNew starts a node just laid out (want is the ID the schedule gave
// it), after making its address known to the partitions, and returns once
// it serves HTTP.
func (n *Nemesis) startNew(ctx context.Context, node *cluster.Node, want string) (string, error) {
	if node.ID != want {
		// The schedule names nodes as launch does; a mismatch means a
		// node was added outside the schedule.
		return "", fmt.Errorf("the cluster named the new node %s, the schedule %s", node.ID, want)
	}
	if n.net != nil {
		if err := n.net.AddHost(node.ID, node.Host); err != nil {
			return "", err
		}
	}
	start := time.Now()
	n.mu.Lock()
	n.started[node.ID] = start
	n.mu.Unlock()
	if err := n.c.StartNode(node.ID); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		err := n.c.Healthz(wctx, node.ID)
		if err == nil || strings.Contains(err.Error(), "503") {
			break
		}
		if wctx.Err() != nil {
			return "", fmt.Errorf("%s at %s started but not serving within 20s: %w", node.ID, node.Host, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("%s started at %s (grpc %s), serving after %.1fs", node.ID, node.Host, node.GRPC, time.Since(start).Seconds()), nil
}

// viewers returns the running members (not removed) but except, whose
// views of the ring the settle waits consult.
func (n *Nemesis) viewers(except string) []*cluster.Node {
	var out []*cluster.Node
	for _, node := range n.c.Nodes() {
		if node.ID != except && !node.Removed() && node.State() == cluster.Running {
			out = append(out, node)
		}
	}
	return out
}

// changing are the ring states of a member in the middle of a topology
// change.
var changing = map[string]bool{"joining": true, "leaving": true, "removing": true}

// waitLeft waits until every running member that answers (at least one)
// places node id as left (or no longer lists it: gossip has forgotten a
// member that left) and sees no topology change in progress, polling until
// ctx ends. Times count from the change's start.
func (n *Nemesis) waitLeft(ctx context.Context, id string) (string, error) {
	n.mu.Lock()
	start, ok := n.started[id]
	n.mu.Unlock()
	if !ok {
		start = time.Now()
	}
	last := "no answer"
	for {
		answered, settled := 0, 0
		views := map[string]string{}
		for _, node := range n.viewers(id) {
			st, err := n.c.Status(ctx, node.ID)
			if err != nil {
				continue
			}
			answered++
			state, busy := "absent", ""
			for _, m := range st.Members {
				if m.ID == id {
					state = m.RingState
				} else if changing[m.RingState] {
					busy = m.ID + " " + m.RingState
				}
			}
			views[node.ID] = state
			if busy != "" {
				views[node.ID] += " (" + busy + ")"
			}
			if (state == "left" || state == "absent") && busy == "" {
				settled++
			}
		}
		if answered > 0 && settled == answered {
			return fmt.Sprintf("%s left the ring %.1fs after the change began (in the view of %d nodes)", id, time.Since(start).Seconds(), answered), nil
		}
		last = fmt.Sprintf("ring states of %s by viewer: %v", id, views)
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("%s has not left the ring %.0fs after the change began: %s", id, time.Since(start).Seconds(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitNormal waits until node id is normal on the ring in its own view and
// in that of another node (the metadata log has applied the entry that
// ends its join), polling until ctx ends. Times count from the node's
// start.
func (n *Nemesis) waitNormal(ctx context.Context, id string) (string, error) {
	n.mu.Lock()
	start, ok := n.started[id]
	n.mu.Unlock()
	if !ok {
		start = time.Now()
	}
	last := "no answer"
	for {
		views := map[string]string{}
		for _, node := range n.c.Nodes() {
			if node.State() != cluster.Running {
				continue
			}
			st, err := n.c.Status(ctx, node.ID)
			if err != nil {
				continue
			}
			for _, m := range st.Members {
				if m.ID == id {
					views[node.ID] = m.RingState
				}
			}
		}
		others := 0
		for viewer, state := range views {
			if viewer != id && state == "normal" {
				others++
			}
		}
		if views[id] == "normal" && others > 0 {
			return fmt.Sprintf("%s normal on the ring %.1fs after its start (in the view of %s and %d other nodes)", id, time.Since(start).Seconds(), id, others), nil
		}
		last = fmt.Sprintf("ring states of %s by viewer: %v", id, views)
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("%s not normal on the ring %.0fs after its start: %s", id, time.Since(start).Seconds(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// watchGossip follows, in the background, how the nodes' own failure
// detectors see the partition: for one node on each side, when (if ever,
// before the partition is undone) it saw all of its cut peers down. It
// records the outcome as an observe-partition event. This is evidence, not
// a condition: the TCP probes already proved the rules cut the links.
func (n *Nemesis) watchGossip(ctx context.Context, f history.Fault) {
	start := time.Now()
	gen := n.partitionGen.Add(1)
	var watch []string
	sides := map[string]bool{}
	ids := make([]string, 0, len(f.Grudge))
	for id := range f.Grudge {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		key := strings.Join(f.Grudge[id], ",")
		if len(f.Grudge[id]) > 0 && !sides[key] && len(watch) < 2 {
			sides[key] = true
			watch = append(watch, id)
		}
	}
	n.watchers.Add(1)
	go func() {
		defer n.watchers.Done()
		var parts []string
		for _, id := range watch {
			drops := f.Grudge[id]
			seen := -1
			for ctx.Err() == nil && n.partitionGen.Load() == gen && time.Since(start) < time.Minute {
				st, err := n.c.Status(ctx, id)
				if err == nil {
					down := 0
					for _, m := range st.Members {
						if slices.Contains(drops, m.ID) && m.State != "alive" {
							down++
						}
					}
					seen = down
					if down == len(drops) {
						break
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			if seen == len(drops) {
				parts = append(parts, fmt.Sprintf("%s saw its %d cut peers down after %.1fs", id, len(drops), time.Since(start).Seconds()))
			} else {
				parts = append(parts, fmt.Sprintf("%s saw %d of its %d cut peers down before the partition ended (%.1fs)", id, max(0, seen), len(drops), time.Since(start).Seconds()))
			}
		}
		f.Verified = "gossip: " + strings.Join(parts, "; ")
		n.record(history.Info, "observe-partition", f, nil)
	}()
}

// HealAll undoes every fault whatever the schedule did: it removes every
// partition rule, continues every paused node, restarts every stopped node
// and resets every node's test hooks (clock, slow replies, dropped writes),
// then waits until every node serves and sees every other alive. It records
// a heal event.
func (n *Nemesis) HealAll(ctx context.Context, timeout time.Duration) error {
	n.record(history.Invoke, "heal", history.Fault{Kind: "heal"}, nil)
	var errs []error
	if n.net != nil {
		n.partitionGen.Add(1)
		if err := n.net.Heal(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, node := range n.c.Nodes() {
		if node.Removed() || n.isLeaving(node.ID) {
			continue // gone for good, or on its way out
		}
		switch node.State() {
		case cluster.Paused:
			if err := n.c.Resume(node.ID); err != nil {
				errs = append(errs, err)
			}
		case cluster.Stopped:
			if err := n.c.StartNode(node.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A decommission that did not settle in its window must finish now:
	// the final reads place keys on the ring without the node.
	n.mu.Lock()
	var leaving []string
	for id := range n.leaving {
		leaving = append(leaving, id)
	}
	n.mu.Unlock()
	slices.Sort(leaving)
	var settled []string
	for _, id := range leaving {
		proof, err := n.finishLeave(wctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("after the heal: %w", err))
		} else {
			settled = append(settled, proof)
		}
	}
	for _, node := range n.c.Nodes() {
		if node.Removed() {
			continue
		}
		for {
			hctx, hc := context.WithTimeout(wctx, 2*time.Second)
			err := n.c.Hook(hctx, node.ID, "reset", nil)
			hc()
			if err == nil {
				break
			}
			if wctx.Err() != nil {
				errs = append(errs, fmt.Errorf("reset hooks on %s: %w", node.ID, err))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := n.c.WaitReady(wctx, n.c.Members()); err != nil {
		errs = append(errs, fmt.Errorf("cluster not healthy %v after the heal: %w", timeout, err))
	}
	fault := history.Fault{Kind: "heal"}
	// A node added during the faults must have finished joining: the
	// final reads and the convergence check place keys on the ring that
	// includes it.
	joined := settled
	for _, node := range n.c.Nodes() {
		if !node.Added || node.Removed() {
			continue
		}
		proof, err := n.waitNormal(wctx, node.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("after the heal: %w", err))
		} else {
			joined = append(joined, proof)
		}
	}
	if len(joined) > 0 {
		fault.Verified = strings.Join(joined, "; ")
	}
	if n.net != nil {
		// With a deadline of its own: the wait above may have used up ctx's,
		// and the rules must be proven gone whether or not the cluster
		// became healthy.
		vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		proof, err := n.c.VerifyPartition(vctx, cluster.Grudge{})
		vcancel()
		if err != nil {
			errs = append(errs, err)
		}
		fault.Verified = strings.TrimPrefix(fault.Verified+"; "+proof, "; ")
	}
	err := errors.Join(errs...)
	n.record(history.Info, "heal", fault, err)
	n.mu.Lock()
	clear(n.active)
	n.mu.Unlock()
	return err
}
