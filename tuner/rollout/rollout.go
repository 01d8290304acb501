package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/tuner"
)

// DefaultRepairTimeout bounds a repair pass the executor runs, before
// lowering a quorum under a quorum floor or to stream data to the replicas
// a growing N adds; the tuner loop waits for it.
const DefaultRepairTimeout = 5 * time.Minute

// pollInterval is how often WaitApplied asks the members that have not yet
// said they applied an index.
const pollInterval = 20 * time.Millisecond

// Config is a keyspace configuration as the executor proposes it: one
// "tune" entry of the metadata log.
type Config struct {
	Keyspace string
	// Policy is the N, R, W and read path to put in force.
	Policy tuner.Policy
	// HedgeAfter is the hedging delay the coordinators use on the hedged
	// read path (0: they do not hedge).
	HedgeAfter time.Duration
	// PendingN, when above Policy.N, is the N the keyspace is growing to:
	// writes also go to the replicas it adds (0: none).
	PendingN int
	// State is the tuner's memory of the keyspace, kept in the log so that
	// a new leader continues from it.
	State *tuner.State
}

// Log is the metadata log, on its leader.
type Log interface {
	// Propose commits c and returns its epoch (its log index) once this
	// node has applied it.
	Propose(ctx context.Context, c Config) (epoch uint64, err error)
	// InForce returns keyspace's configuration as this node has applied
	// it, R and W spelled out; an error when it does not know the keyspace.
	InForce(keyspace string) (Config, error)
}

// Member is a ring member as WaitApplied sees it.
type Member struct {
	ID string
	// Left is set once the member said it is leaving the cluster for good.
	Left bool
}

// Cluster is what the executor needs of the members.
type Cluster interface {
	// RingSize is the number of ring members: the most replicas a key can
	// have.
	RingSize() int
	// Members lists every member, gossip's dead ones too: a node cut off by
	// a partition is dead to this side but may still serve clients.
	Members() []Member
	// Applied reports whether member id says it has applied the metadata
	// log up to index; false when it cannot tell (unreachable).
	Applied(ctx context.Context, id string, index uint64) bool
}

// RepairResult is what a repair pass reports, for the executor's log.
type RepairResult struct {
	// ReplicationFactor is the number of replicas each key was filled to.
	ReplicationFactor int
	// Nodes is how many nodes completed their part.
	Nodes int
	// KeysScanned and RecordsPushed count the pass's work.
	KeysScanned, RecordsPushed uint64
}

// Repairer runs repair passes.
type Repairer interface {
	// Repair runs a pass over keyspace on every node, none allowed down,
	// filling replicationFactor replicas of each key (0: the keyspace's N),
	// and returns once every node completed its part, or an error.
	Repair(ctx context.Context, keyspace string, replicationFactor int) (RepairResult, error)
}

// CleanupResult is what a cleanup reports, for the decision's explanation.
type CleanupResult struct {
	// Nodes is how many nodes completed their part.
	Nodes int
	// KeysScanned and KeysRemoved count the records looked at and deleted.
	KeysScanned, KeysRemoved uint64
}

// Cleaner runs cleanups.
type Cleaner interface {
	// Cleanup deletes, on every node, none allowed down, the records of
	// keyspace whose keys the node is not a replica of under the
	// configuration in force, and returns once every node completed its
	// part, or an error naming one that did not.
	Cleanup(ctx context.Context, keyspace string) (CleanupResult, error)
}

// Clock is the executor's time.
type Clock interface {
	Now() time.Time
	// After sends the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Keyspace is the keyspace a plan applies to, as the decision saw it.
type Keyspace struct {
	Name string
	// Epoch is the configuration in force when the plan was made.
	Epoch uint64
	// Floor is the keyspace goal's floor: under tuner.FloorQuorum, steps
	// that require a repair pass get one.
	Floor tuner.Floor
}

// Executor carries out plans. Set its fields before first use.
type Executor struct {
	Log      Log
	Cluster  Cluster
	Repairer Repairer
	// Cleaner cleans the replicas a shrink of N drops (Cleanup).
	Cleaner Cleaner
	// Clock is the executor's time; nil means the system clock.
	Clock Clock
	// LeaseWait is how long after committing a step a member that has not
	// said it applied the step is taken to hold no configuration lease
	// from before it (the lease, plus margins for clock rates and
	// scheduling).
	LeaseWait time.Duration
	// RepairTimeout bounds each repair pass and each cleanup; 0 means
	// DefaultRepairTimeout.
	RepairTimeout time.Duration
	// Logger receives the executor's logs; nil discards them.
	Logger *slog.Logger
}

func (e *Executor) now() time.Time {
	if e.Clock == nil {
		return time.Now()
	}
	return e.Clock.Now()
}

func (e *Executor) after(d time.Duration) <-chan time.Time {
	if e.Clock == nil {
		return time.After(d)
	}
	return e.Clock.After(d)
}

func (e *Executor) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Apply carries out a decision's plan, one metadata log entry per step, and
// returns the state left in force, and a note for the decision's
// explanation on what it did beyond the plan's steps: prev is the state before the decision
// (its Policy the configuration in force), next the decision's state, whose
// other fields are kept. Under a quorum floor a step that requires a repair
// pass gets one (over every node, none allowed down): before it is
// committed when it lowers a quorum, right after it is applied everywhere
// when it only raises one. A step that grows N streams first (see grow). A
// pass that cannot finish stops the plan where it is, which is safe: every
// step committed so far is.
//
// A step that shrinks N is the plan's last, and needs no streaming: the
// replicas that leave a key's preference list keep its data. While they
// are out of the list no delete reaches them, so once their tombstones are
// collected elsewhere a later grow would stream their old values back: a
// resurrection risk that the repair pass of a grow cannot see, as a
// collected tombstone is nothing to compare with. So once the shrink is in
// force everywhere, Apply cleans the keyspace on every node (Cleanup),
// which deletes the dropped replicas' copies; until a cleanup has
// completed, a grow is refused (GrowAllowed). A cleanup that cannot
// complete does not fail the plan, whose steps are all in force: the
// state keeps it owed and the note says why.
func (e *Executor) Apply(ctx context.Context, ks Keyspace, dec tuner.Decision, prev, next tuner.State) (tuner.State, string, error) {
	cur := next
	cur.Policy, cur.Unrepaired = prev.Policy, prev.Unrepaired
	floor := ks.Floor == tuner.FloorQuorum
	// The plan's first step is safe only from the configuration in force,
	// not from the one before it, which some node may still serve: the last
	// step of the previous plan was not waited for. When it was committed
	// is not known here, so now bounds it.
	if err := e.WaitApplied(ctx, ks.Epoch, e.now()); err != nil {
		return cur, "", fmt.Errorf("before step 1: the configuration in force (epoch %d): %w", ks.Epoch, err)
	}
	// last is the epoch and commit time of the plan's last step committed,
	// and whether the plan waited for it to be applied everywhere; shrunk
	// whether a step lowered N.
	var last struct {
		epoch       uint64
		committedAt time.Time
		waited      bool
	}
	shrunk := false
	for i, st := range dec.Plan {
		if size := e.Cluster.RingSize(); st.Policy.N > size {
			return cur, "", fmt.Errorf("step %d (%v): the ring has %d members", i+1, st.Policy, size)
		}
		// Whether the pass comes before the step is decided against the
		// policy the step replaces, before cur moves to it.
		repairFirst := floor && st.RepairFirst(cur.Policy)
		if repairFirst {
			// The step before is applied everywhere: the first step's
			// from is in force, and every later one waited below.
			if err := e.repair(ctx, ks.Name, fmt.Sprintf("before step %d (%v)", i+1, st.Policy), 0); err != nil {
				return cur, "", err
			}
			cur.Repaired()
		}
		if st.RequiresStreaming {
			if err := e.GrowAllowed(cur); err != nil {
				return cur, "", err
			}
			if err := e.grow(ctx, ks.Name, cur, st.Policy.N, fmt.Sprintf("before step %d (%v)", i+1, st.Policy)); err != nil {
				return cur, "", err
			}
		}
		lowersN := st.Policy.N < cur.Policy.N
		if st.Policy.N != cur.Policy.N {
			cur.Resized(st.Policy.N, e.now())
		}
		cur.Moved(st.Policy)
		c := Config{Keyspace: ks.Name, Policy: st.Policy}
		if st.Policy.Read == tuner.ReadHedged && dec.Chosen != nil {
			c.HedgeAfter = max(dec.Chosen.HedgeAfter, time.Millisecond)
		}
		// A step repaired after it is recorded unrepaired until the pass
		// has run: a leader that fails over in between must not forget the
		// weak writes.
		repairAfter := floor && st.RequiresRepair && !repairFirst
		c.State = cloneState(cur)
		epoch, err := e.Log.Propose(ctx, c)
		committedAt := e.now()
		if err != nil {
			if st.RequiresStreaming {
				e.abandonGrow(ctx, ks.Name, &cur)
			}
			return cur, "", fmt.Errorf("step %d (%v): %w", i+1, st.Policy, err)
		}
		waited := i < len(dec.Plan)-1 || st.RequiresAllApplied || repairAfter
		if waited {
			if err := e.WaitApplied(ctx, epoch, committedAt); err != nil {
				return cur, "", fmt.Errorf("after step %d (%v): %w", i+1, st.Policy, err)
			}
		}
		last.epoch, last.committedAt, last.waited = epoch, committedAt, waited
		shrunk = shrunk || lowersN
		if repairAfter {
			if err := e.repair(ctx, ks.Name, fmt.Sprintf("after step %d (%v)", i+1, st.Policy), 0); err != nil {
				return cur, "", err
			}
			cur.Repaired()
		}
	}
	if !shrunk || cur.ShrunkAt.IsZero() {
		return cur, "", nil
	}
	// The cleanup must not delete a record that a node still serving a
	// configuration from before the shrink counts as a replica's.
	if !last.waited {
		if err := e.WaitApplied(ctx, last.epoch, last.committedAt); err != nil {
			cur.CleanupError = fmt.Sprintf("the shrink (epoch %d) is not known to be in force everywhere: %v", last.epoch, err)
			return cur, e.owedNote(cur), nil
		}
	}
	note, _ := e.Cleanup(ctx, ks.Name, &cur)
	return cur, note, nil
}

// ErrCleanupOwed refuses to grow N while the cleanup after a shrink of N
// has not completed.
var ErrCleanupOwed = errors.New("N may not grow while the cleanup after its shrink is owed")

// GrowAllowed refuses a grow while the cleanup after a shrink of N is owed
// (cur.ShrunkAt set; an error that is ErrCleanupOwed): the replicas dropped
// then may still hold their data but missed every delete since, and the
// others collect tombstones after the grace, so streaming could bring
// deleted values back. Once a cleanup has removed the dropped replicas'
// copies there is nothing to bring back, and growing is allowed.
func (e *Executor) GrowAllowed(cur tuner.State) error {
	if cur.ShrunkAt.IsZero() {
		return nil
	}
	why := ""
	if cur.CleanupError != "" {
		why = " (last attempt: " + cur.CleanupError + ")"
	}
	return fmt.Errorf("%w: N shrank from %d at %s and the replicas it dropped are not cleaned yet%s, so they may hold values deleted since, which growing would stream back",
		ErrCleanupOwed, cur.ShrunkFrom, cur.ShrunkAt.UTC().Format(time.RFC3339), why)
}

// Cleanup runs the cleanup a shrink of N left owed (cur.ShrunkAt set; none
// owed: nothing to do) over keyspace name on every node, the configuration
// in force being applied everywhere (the caller's to ensure), and records
// the outcome in cur: cleared once it completed, the reason kept in
// cur.CleanupError when it did not. It returns a note for the decision's
// explanation, and the cleanup's error. The tuner loop calls it again on
// later decisions while one is owed.
func (e *Executor) Cleanup(ctx context.Context, name string, cur *tuner.State) (string, error) {
	if cur.ShrunkAt.IsZero() {
		return "", nil
	}
	if e.Cleaner == nil {
		cur.CleanupError = "this node cannot run cleanups"
		return e.owedNote(*cur), errors.New(cur.CleanupError)
	}
	timeout := e.RepairTimeout
	if timeout <= 0 {
		timeout = DefaultRepairTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := e.now()
	res, err := e.Cleaner.Cleanup(cctx, name)
	if err != nil {
		cur.CleanupError = err.Error()
		e.log().Warn("tuner cleanup after a shrink of N did not complete; it is owed", "keyspace", name, "shrunk_from", cur.ShrunkFrom, "err", err)
		return e.owedNote(*cur), fmt.Errorf("cleanup after N shrank from %d: %w", cur.ShrunkFrom, err)
	}
	from := cur.ShrunkFrom
	cur.Cleaned()
	e.log().Info("tuner cleanup after a shrink of N", "keyspace", name, "shrunk_from", from, "took", e.now().Sub(start).Round(time.Millisecond),
		"nodes", res.Nodes, "scanned", res.KeysScanned, "removed", res.KeysRemoved)
	return fmt.Sprintf("Cleaned up after N shrank from %d: %d nodes removed %d of the %d records they held of keys they no longer replicate, so N may grow again.",
		from, res.Nodes, res.KeysRemoved, res.KeysScanned), nil
}

// owedNote explains a cleanup that is still owed.
func (e *Executor) owedNote(cur tuner.State) string {
	return fmt.Sprintf("The cleanup after N shrank from %d did not complete (%s); it is owed and retried at later decisions, and N will not grow until it completes.",
		cur.ShrunkFrom, cur.CleanupError)
}

// grow readies the replicas a step that raises N to newN adds
// (tuner.Step.RequiresStreaming), with cur, the state in force, unchanged:
//
//  1. an entry sets PendingN to newN, and every node applies it (or its
//     configuration lease runs out: WaitApplied), so that from then on
//     every write also goes to the added replicas (a hint when one is down
//     or fails), and a write still carrying the epoch before is refused by
//     every replica and retried under it;
//  2. a repair pass at newN copies to them what the replicas held when it
//     started, which covers every write acknowledged under the epoch
//     before.
//
// Only then may the caller commit the step, which counts them. When the
// pass fails, PendingN is cleared again, leaving the keyspace as it was,
// and the error says so.
func (e *Executor) grow(ctx context.Context, name string, cur tuner.State, newN int, when string) error {
	epoch, err := e.setPendingApplied(ctx, name, newN, cloneState(cur))
	if err != nil {
		e.abandonGrow(ctx, name, &cur)
		return fmt.Errorf("announce N=%d %s: %w", newN, when, err)
	}
	e.log().Info("tuner streaming to added replicas", "keyspace", name, "pending_n", newN, "epoch", epoch)
	if err := e.repair(ctx, name, fmt.Sprintf("streaming to N=%d %s", newN, when), newN); err != nil {
		e.abandonGrow(ctx, name, &cur)
		return fmt.Errorf("N stays at %d, writes no longer sent to the added replicas: %w", cur.Policy.N, err)
	}
	return nil
}

// setPendingApplied proposes PendingN n for keyspace name and waits until
// every node has applied it (WaitApplied); it returns the entry's epoch.
func (e *Executor) setPendingApplied(ctx context.Context, name string, n int, state *tuner.State) (uint64, error) {
	epoch, err := e.setPending(ctx, name, n, state)
	if err != nil {
		return 0, err
	}
	if err := e.WaitApplied(ctx, epoch, e.now()); err != nil {
		return 0, err
	}
	return epoch, nil
}

// SetPending proposes an entry that keeps keyspace name's configuration in
// force (as this node, the leader, has applied it) and sets its PendingN to
// n (0: none) and its tuner state to state. The tuner loop uses it to clear
// a PendingN that a leader which stopped mid-grow left behind.
func (e *Executor) SetPending(ctx context.Context, name string, n int, state *tuner.State) error {
	_, err := e.setPending(ctx, name, n, state)
	return err
}

func (e *Executor) setPending(ctx context.Context, name string, n int, state *tuner.State) (uint64, error) {
	c, err := e.Log.InForce(name)
	if err != nil {
		return 0, err
	}
	c.PendingN, c.State = n, state
	epoch, err := e.Log.Propose(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("set pending N to %d: %w", n, err)
	}
	return epoch, nil
}

// abandonGrow clears PendingN after a grow that did not complete, so that
// writes stop going to replicas that will not count. Its failure is logged
// only: the next decision clears a PendingN left behind.
func (e *Executor) abandonGrow(ctx context.Context, name string, cur *tuner.State) {
	// Clear it even when the plan's context has ended: writes would
	// otherwise keep going to replicas that will not count.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.SetPending(cctx, name, 0, cloneState(*cur)); err != nil {
		e.log().Warn("tuner could not clear pending N after a failed grow; the next decision will", "keyspace", name, "err", err)
	}
}

// cloneState copies s so that the metadata entry does not share its
// Unrepaired slice with the executor's working state.
func cloneState(s tuner.State) *tuner.State {
	s.Unrepaired = slices.Clone(s.Unrepaired)
	return &s
}

// repair runs a repair pass over keyspace name on every node, filling rf
// replicas of each key (0: N).
func (e *Executor) repair(ctx context.Context, name, when string, rf int) error {
	timeout := e.RepairTimeout
	if timeout <= 0 {
		timeout = DefaultRepairTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := e.now()
	res, err := e.Repairer.Repair(rctx, name, rf)
	if err != nil {
		return fmt.Errorf("repair pass %s: %w", when, err)
	}
	e.log().Info("tuner repair pass", "keyspace", name, "when", when, "rf", res.ReplicationFactor, "took", e.now().Sub(start).Round(time.Millisecond),
		"nodes", res.Nodes, "scanned", res.KeysScanned, "pushed", res.RecordsPushed)
	return nil
}

// WaitApplied waits until no node can still serve a fenced keyspace at a
// configuration before index, the entry committed at committedAt (or, when
// the leader does not know when, any time before committedAt): each member
// (gossip's dead ones too: a node cut off by a partition is dead to this
// side but may still serve clients on its own) must say it has applied
// index, or LeaseWait must have passed since committedAt, after which a
// member that did not apply it holds no lease from before it
// (replication/fence.go). Only members that left the cluster are skipped,
// once the lease wait is over. It gives up 10 s after the lease wait.
func (e *Executor) WaitApplied(ctx context.Context, index uint64, committedAt time.Time) error {
	leaseOver := committedAt.Add(e.LeaseWait)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second+leaseOver.Sub(e.now()))
	defer cancel()
	confirmed := map[string]bool{}
	for {
		lagging := ""
		for _, m := range e.Cluster.Members() {
			if confirmed[m.ID] {
				continue
			}
			if m.Left && e.now().After(leaseOver) {
				// It said it was leaving; a lease it took before cannot
				// outlast leaseOver either.
				continue
			}
			if e.Cluster.Applied(wctx, m.ID, index) {
				confirmed[m.ID] = true
				continue
			}
			if lagging == "" {
				lagging = m.ID
			}
		}
		if lagging == "" || e.now().After(leaseOver) {
			if lagging != "" {
				e.log().Info("configuration step relies on lease expiry", "index", index, "unconfirmed", lagging, "waited", e.now().Sub(committedAt).Round(time.Millisecond))
			}
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("node %s has not applied metadata index %d: %w", lagging, index, wctx.Err())
		case <-e.after(pollInterval):
		}
	}
}
