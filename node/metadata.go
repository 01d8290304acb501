package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/health"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/tuner"
)

// Errors of the metadata log that the admin API maps to statuses.
var (
	ErrKeyspaceExists = errors.New("node: keyspace already exists")
	ErrNoLeader       = errors.New("node: metadata log has no leader")
)

// KeyspaceDef is a keyspace's configuration as stored in the metadata log.
// Epoch is the index of the log entry that last changed it.
type KeyspaceDef struct {
	Name              string `json:"name"`
	ReplicationFactor int    `json:"rf"`
	Level             string `json:"level"` // one, quorum, all or custom
	R                 int    `json:"r,omitempty"`
	W                 int    `json:"w,omitempty"`
	Epoch             uint64 `json:"epoch"`
	CreatedUnixMs     int64  `json:"created"`
	UpdatedUnixMs     int64  `json:"updated"`
	// Adaptive is set for keyspaces whose R, W and read path the tuner
	// chooses; Level is then "custom" with the R and W in force.
	Adaptive *tuner.Goal `json:"adaptive,omitempty"`
	// ReadAll and HedgeAfterNs are the read path in force (see
	// replication.KeyspaceConfig).
	ReadAll      bool  `json:"read_all,omitempty"`
	HedgeAfterNs int64 `json:"hedge_after_ns,omitempty"`
	// Tuner is the tuner's memory of the keyspace, so that a new metadata
	// leader continues where the old one stopped.
	Tuner *tuner.State `json:"tuner,omitempty"`
	// PendingN, when larger than ReplicationFactor, is the replication
	// factor the tuner is growing the keyspace to: coordinators also send
	// writes to the added replicas, acknowledging a write only once they
	// have it but not counting them towards W, while a repair pass streams
	// the existing data there (replication.KeyspaceConfig).
	// Only the tuner sets it, in a "tune" entry of its own; the entry that
	// raises ReplicationFactor clears it.
	PendingN int `json:"pending_n,omitempty"`
}

// maxDecisions is how many tuner decisions the metadata log keeps per
// keyspace for `adaptkv tuner explain`.
const maxDecisions = 50

// command is one entry of the metadata log.
type command struct {
	Op       string      `json:"op"` // "create", "alter", "tune", "decision", "number" or "topo-*" (topology.go)
	Keyspace KeyspaceDef `json:"keyspace"`
	// Members are the ring members a topology entry places.
	Members []TopologyMember `json:"members,omitempty"`
	// Node is the member a "number" entry assigns a node number to.
	Node string `json:"node,omitempty"`
	// Decision is a tuner decision to record ("decision"), and
	// PrevObserved what was measured under the previous one.
	Decision     json.RawMessage `json:"decision,omitempty"`
	PrevObserved json.RawMessage `json:"prev_observed,omitempty"`
	// Stream is a topology change's stream checkpoint ("stream-progress",
	// stream.go).
	Stream *StreamProgress `json:"stream,omitempty"`
	// Keyring is a gossip keyring change ("keyring", keyring.go).
	Keyring *keyringChange `json:"keyring,omitempty"`
	// User is a user-management entry's change ("user-*", "auth-secret",
	// users.go).
	User *userCmd `json:"user,omitempty"`
	// Health is a health detector's decision ("health", health.go).
	Health json.RawMessage `json:"health,omitempty"`
	// AtUnixMs is the proposer's clock, so that every node records the same
	// creation time.
	AtUnixMs int64 `json:"at"`
}

// applyResult is what fsm.Apply returns through raft's ApplyFuture.
type applyResult struct {
	def    KeyspaceDef
	number uint32      // of a "number" entry
	user   *UserRecord // of a "user-*" entry
	err    error
}

// fsm is the metadata state machine: the keyspace configurations. Reads go
// through an immutable map behind an atomic pointer, so the data path never
// takes a lock to look a keyspace up.
type fsm struct {
	mu        sync.Mutex // serializes Apply and Restore
	keyspaces atomic.Pointer[map[string]KeyspaceDef]
	// decisions are the recent tuner decisions per keyspace, as JSON.
	decisions atomic.Pointer[map[string][]json.RawMessage]
	// numbers are the node numbers assigned through the log ("number"
	// entries): unique by construction, never reused, so that two nodes
	// never stamp the same version (see nodeNumber in numbers.go).
	numbers atomic.Pointer[map[string]uint32]
	// topo is the ring membership (topology.go).
	topo atomic.Pointer[topoState]
	// stream is the last checkpoint of the topology change's stream
	// (stream.go); nil when none was written.
	stream atomic.Pointer[StreamProgress]
	// gossip is the cluster's gossip keyring (keyring.go).
	gossip keyringFSM
	// auth is the users, their grants and the token secret (users.go).
	auth atomic.Pointer[authState]
	// health is the flagged nodes and recent health decisions (health.go).
	health atomic.Pointer[healthState]
	// vnodes is the ring's vnodes per member; every node must agree.
	vnodes   int
	applied  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after each apply
}

func newFSM() *fsm {
	f := &fsm{notify: make(chan struct{})}
	empty := map[string]KeyspaceDef{}
	f.keyspaces.Store(&empty)
	none := map[string][]json.RawMessage{}
	f.decisions.Store(&none)
	noNumbers := map[string]uint32{}
	f.numbers.Store(&noNumbers)
	f.topo.Store(&topoState{})
	f.auth.Store(newAuthState())
	f.health.Store(&healthState{Flagged: map[string]health.Decision{}})
	return f
}

func (f *fsm) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.advance(l.Index)
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return applyResult{err: fmt.Errorf("decode metadata entry %d: %w", l.Index, err)}
	}
	switch c.Op {
	case "number":
		return applyResult{number: f.assignNumber(c.Node)}
	case "keyring":
		return f.applyKeyring(c.Keyring, l.Index)
	case "user-create", "user-drop", "user-passwd", "user-grant", "user-revoke", "auth-secret":
		var uc userCmd
		if c.User != nil {
			uc = *c.User
		}
		next, u, err := applyUserOp(f.auth.Load(), c.Op, uc, l.Index, c.AtUnixMs)
		f.auth.Store(next)
		return applyResult{user: u, err: err}
	case "health":
		return f.applyHealth(c.Health, l.Index)
	case "nop":
		// Changes nothing; it gives the leader's read index an entry that
		// reaches the state machine (see localReadIndex).
		return applyResult{}
	case "stream-progress":
		// Only the change in progress is checkpointed: a deposed leader's
		// late checkpoint of a change that has ended is refused.
		t := f.topo.Load().Topology
		if _, ok := t.Changing(); !ok || c.Stream == nil || c.Stream.Since != t.Epoch {
			return applyResult{err: fmt.Errorf("%w: stream checkpoint for a change not in progress", ErrTopologyChange)}
		}
		f.stream.Store(c.Stream)
		return applyResult{}
	case "topo-init", "topo-join", "topo-normal", "topo-leave", "topo-remove", "topo-left",
		"topo-replace", "topo-replaced":
		next, err := applyTopology(f.topo.Load().Topology, c.Op, c.Members, l.Index)
		if err != nil {
			return applyResult{err: err}
		}
		f.topo.Store(newTopoState(next, f.vnodes))
		return applyResult{}
	}
	cur := *f.keyspaces.Load()
	def := c.Keyspace
	old, exists := cur[def.Name]
	switch c.Op {
	case "create":
		if exists {
			return applyResult{def: old, err: fmt.Errorf("keyspace %q: %w", def.Name, ErrKeyspaceExists)}
		}
		def.CreatedUnixMs, def.UpdatedUnixMs = c.AtUnixMs, c.AtUnixMs
	case "alter":
		if !exists {
			return applyResult{err: fmt.Errorf("keyspace %q: %w", def.Name, replication.ErrKeyspaceNotFound)}
		}
		if def.ReplicationFactor == 0 {
			def.ReplicationFactor = old.ReplicationFactor
		}
		if def.Level == "" {
			def.Level, def.R, def.W = old.Level, old.R, old.W
			def.ReadAll, def.HedgeAfterNs = old.ReadAll, old.HedgeAfterNs
		}
		if def.Adaptive == nil && old.Adaptive != nil && def.Level == quorum.Custom.String() {
			def.Adaptive = old.Adaptive
		}
		if def.Adaptive != nil {
			def.Tuner = old.Tuner
		}
		// A user's change of R or W must not stop writes from reaching the
		// replicas the tuner is streaming to.
		def.PendingN = old.PendingN
		def.CreatedUnixMs, def.UpdatedUnixMs = old.CreatedUnixMs, c.AtUnixMs
	case "tune":
		// The tuner moves an adaptive keyspace to a new N, R, W and read
		// path, or announces the replicas a growing N will add.
		if !exists || old.Adaptive == nil {
			return applyResult{err: fmt.Errorf("keyspace %q is not adaptive: %w", def.Name, replication.ErrKeyspaceNotFound)}
		}
		if err := checkTune(old, def); err != nil {
			return applyResult{def: old, err: fmt.Errorf("keyspace %q: %w", def.Name, err)}
		}
		next := old
		if def.ReplicationFactor != 0 {
			next.ReplicationFactor = def.ReplicationFactor
		}
		next.PendingN = def.PendingN
		next.Level, next.R, next.W = quorum.Custom.String(), def.R, def.W
		next.ReadAll, next.HedgeAfterNs = def.ReadAll, def.HedgeAfterNs
		next.Tuner = def.Tuner
		next.UpdatedUnixMs = c.AtUnixMs
		def = next
	case "decision":
		// Recording a decision changes no configuration, so no epoch moves.
		f.recordDecision(def.Name, c.Decision, c.PrevObserved)
		if def.Tuner != nil && exists {
			old.Tuner = def.Tuner
			next := make(map[string]KeyspaceDef, len(cur))
			for k, v := range cur {
				next[k] = v
			}
			next[def.Name] = old
			f.keyspaces.Store(&next)
		}
		return applyResult{def: old}
	default:
		return applyResult{err: fmt.Errorf("metadata entry %d: unknown op %q", l.Index, c.Op)}
	}
	def.Epoch = l.Index
	next := make(map[string]KeyspaceDef, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[def.Name] = def
	f.keyspaces.Store(&next)
	return applyResult{def: def}
}

// ErrUnsafeTune refuses a "tune" entry that would change N unsafely.
var ErrUnsafeTune = errors.New("node: unsafe replication factor change")

// checkTune refuses a tuner step that could lose acknowledged writes: N
// must stay within the goal's bounds, and it may grow only while PendingN
// already covers the new N, that is, after writes were sent to the added
// replicas and (the tuner's duty, which the log cannot check) their data
// was streamed. An entry written before N could change carries
// ReplicationFactor 0 and keeps N. Whether the ring has that many members
// is the proposer's check: the state machine must decide from the log
// alone.
func checkTune(old, def KeyspaceDef) error {
	n := old.ReplicationFactor
	if def.ReplicationFactor != 0 {
		n = def.ReplicationFactor
	}
	g := old.Adaptive
	switch {
	case n != old.ReplicationFactor && (n < g.MinRF || n > g.MaxRF):
		return fmt.Errorf("%w: N=%d is outside the goal's bounds %d..%d", ErrUnsafeTune, n, g.MinRF, g.MaxRF)
	case n > old.ReplicationFactor && old.PendingN < n:
		return fmt.Errorf("%w: N=%d before writes reach the added replicas (pending %d)", ErrUnsafeTune, n, old.PendingN)
	case def.PendingN != 0 && (def.PendingN <= n || def.PendingN > g.MaxRF):
		return fmt.Errorf("%w: pending N=%d must be above N=%d and at most %d", ErrUnsafeTune, def.PendingN, n, g.MaxRF)
	case def.R < 1 || def.R > n || def.W < 1 || def.W > n:
		return fmt.Errorf("%w: R=%d W=%d do not fit N=%d", ErrUnsafeTune, def.R, def.W, n)
	}
	return nil
}

// recordDecision appends a decision to a keyspace's log, keeping the most
// recent maxDecisions, and attaches what was observed under the previous one.
func (f *fsm) recordDecision(keyspace string, decision, prevObserved json.RawMessage) {
	cur := *f.decisions.Load()
	list := append([]json.RawMessage(nil), cur[keyspace]...)
	if len(prevObserved) > 0 && len(list) > 0 {
		var d map[string]json.RawMessage
		if json.Unmarshal(list[len(list)-1], &d) == nil {
			d["observed"] = prevObserved
			if b, err := json.Marshal(d); err == nil {
				list[len(list)-1] = b
			}
		}
	}
	if len(decision) > 0 {
		list = append(list, decision)
	}
	if len(list) > maxDecisions {
		list = list[len(list)-maxDecisions:]
	}
	next := make(map[string][]json.RawMessage, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[keyspace] = list
	f.decisions.Store(&next)
}

// Decisions returns a keyspace's recorded tuner decisions, oldest first.
func (f *fsm) Decisions(keyspace string) []json.RawMessage {
	return (*f.decisions.Load())[keyspace]
}

func (f *fsm) advance(index uint64) {
	f.applied.Store(index)
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	// Raft calls Snapshot between Applys, so applied is the snapshot's
	// index.
	return fsmSnapshot{Keyspaces: *f.keyspaces.Load(), Decisions: *f.decisions.Load(), Numbers: *f.numbers.Load(),
		Topology: f.topo.Load().Topology, Stream: f.stream.Load(), Keyring: f.gossip.state.Load(), Auth: f.auth.Load(), Health: f.health.Load(), Index: f.applied.Load()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var snap fsmSnapshot
	if err := json.NewDecoder(rc).Decode(&snap); err != nil {
		return fmt.Errorf("decode metadata snapshot: %w", err)
	}
	if snap.Keyspaces == nil {
		snap.Keyspaces = map[string]KeyspaceDef{}
	}
	for name, d := range snap.Keyspaces {
		// Snapshot writes each keyspace under its own name; anything else is
		// damage, and would serve one keyspace's configuration for another.
		if d.Name != name {
			return fmt.Errorf("decode metadata snapshot: keyspace %q is stored under %q", d.Name, name)
		}
	}
	if snap.Decisions == nil {
		snap.Decisions = map[string][]json.RawMessage{}
	}
	if snap.Numbers == nil {
		snap.Numbers = map[string]uint32{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keyspaces.Store(&snap.Keyspaces)
	f.decisions.Store(&snap.Decisions)
	f.numbers.Store(&snap.Numbers)
	f.topo.Store(newTopoState(snap.Topology, f.vnodes))
	f.stream.Store(snap.Stream)
	f.auth.Store(snap.Auth.withRoot())
	if snap.Health == nil || snap.Health.Flagged == nil {
		snap.Health = &healthState{Flagged: map[string]health.Decision{}}
	}
	f.health.Store(snap.Health)
	// The state is that of the snapshot's index, which is past the last
	// entry that changed a keyspace when decisions followed it: a node that
	// waited for that index (WaitForIndex, the configuration lease) would
	// otherwise wait for an entry it will never apply again. Snapshots
	// written before Index existed fall back to the highest epoch.
	index := snap.Index
	for _, d := range snap.Keyspaces {
		index = max(index, d.Epoch)
	}
	index = max(index, snap.Topology.Epoch)
	f.restoreKeyring(snap.Keyring, index)
	f.advance(index)
	return nil
}

type fsmSnapshot struct {
	Keyspaces map[string]KeyspaceDef       `json:"keyspaces"`
	Decisions map[string][]json.RawMessage `json:"decisions"`
	Numbers   map[string]uint32            `json:"numbers,omitempty"`
	Topology  Topology                     `json:"topology,omitempty"`
	Stream    *StreamProgress              `json:"stream,omitempty"`
	Keyring   *GossipKeyring               `json:"keyring,omitempty"`
	Auth      *authState                   `json:"auth,omitempty"`
	Health    *healthState                 `json:"health,omitempty"`
	// Index is the last log index the snapshot includes.
	Index uint64 `json:"index,omitempty"`
}

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(s)
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// Keyspace implements replication.Keyspaces.
func (f *fsm) Keyspace(name string) (replication.KeyspaceConfig, bool) {
	d, ok := (*f.keyspaces.Load())[name]
	if !ok {
		return replication.KeyspaceConfig{}, false
	}
	cfg := d.config()
	// The topology epoch is part of every keyspace's epoch: a replica that
	// has applied a topology change refuses a coordinator that places keys
	// on the ring before it, through the same refusal (KnownEpoch) and
	// catch-up as a keyspace change. Both are indices of one log, so the
	// larger is the later configuration.
	cfg.Epoch = max(cfg.Epoch, f.topo.Load().Epoch)
	return cfg, true
}

func (d KeyspaceDef) config() replication.KeyspaceConfig {
	level, _ := parseLevel(d.Level)
	return replication.KeyspaceConfig{
		Name: d.Name, N: d.ReplicationFactor, PendingN: d.PendingN, Default: level, R: d.R, W: d.W, Epoch: d.Epoch,
		ReadAll: d.ReadAll, HedgeAfter: time.Duration(d.HedgeAfterNs),
		ReadRepairChance: readRepairChanceOf(d),
		Fenced:           d.Adaptive != nil && d.Adaptive.Floor == tuner.FloorQuorum,
	}
}

// readRepairChanceOf is a keyspace's read-repair chance: adaptive keyspaces
// keep one read in twenty (replication.ProbeReadRepairChance) comparing
// every replica, because those reads are the tuner's measured staleness;
// others use the node's setting.
func readRepairChanceOf(d KeyspaceDef) float64 {
	if d.Adaptive != nil {
		return replication.ProbeReadRepairChance
	}
	return 0
}

// parseLevel reads a level name as KeyspaceDef.Level stores it ("custom"
// included); an unknown name reads as quorum.Default.
func parseLevel(s string) (quorum.Level, error) {
	if l, ok := api.ParseLevel(s); ok {
		return l, nil
	}
	return quorum.ParseLevel(s)
}

// streamProgress returns the last stream checkpoint, nil when none.
func (f *fsm) streamProgress() *StreamProgress { return f.stream.Load() }

// Def returns a keyspace's stored definition.
func (f *fsm) Def(name string) (KeyspaceDef, bool) {
	d, ok := (*f.keyspaces.Load())[name]
	return d, ok
}

// Defs returns every keyspace sorted by name.
func (f *fsm) Defs() []KeyspaceDef {
	m := *f.keyspaces.Load()
	out := make([]KeyspaceDef, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Applied implements replication.Keyspaces.
func (f *fsm) Applied() uint64 { return f.applied.Load() }

// WaitForIndex implements replication.Keyspaces.
func (f *fsm) WaitForIndex(ctx context.Context, index uint64) error {
	for {
		f.notifyMu.Lock()
		ch := f.notify
		f.notifyMu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for metadata index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// proposeTimeout bounds a proposal whose context has no deadline.
const proposeTimeout = 5 * time.Second

// propose appends a command to the metadata log through the local Raft
// instance, which must be the leader, and returns the applied definition.
// It returns when the entry is applied or ctx ends (bounded by
// proposeTimeout when ctx has no deadline); an entry given up on may still
// be committed later, like any write whose outcome is unknown.
func propose(ctx context.Context, r *raft.Raft, c command) (KeyspaceDef, error) {
	res, _, err := proposeEntry(ctx, r, c)
	if err != nil {
		return KeyspaceDef{}, err
	}
	return res.def, res.err
}

// proposeEntry is propose returning the whole apply result and the
// entry's log index.
func proposeEntry(ctx context.Context, r *raft.Raft, c command) (applyResult, uint64, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return applyResult{}, 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, proposeTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	fut := r.Apply(b, max(time.Until(deadline), time.Millisecond))
	done := make(chan error, 1)
	go func() { done <- fut.Error() }() // Raft completes every future, at the latest on shutdown
	select {
	case err = <-done:
	case <-ctx.Done():
		return applyResult{}, 0, fmt.Errorf("metadata log: %s entry not known to be applied: %w", c.Op, ctx.Err())
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return applyResult{}, 0, fmt.Errorf("%w: %w", ErrNoLeader, err)
		}
		return applyResult{}, 0, fmt.Errorf("metadata log: %w", err)
	}
	res, _ := fut.Response().(applyResult)
	return res, fut.Index(), nil
}
