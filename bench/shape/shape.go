package shape

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// Defaults of Config.
const (
	DefaultKeys        = 10000
	DefaultAdd         = 3
	DefaultWriteRate   = 200
	DefaultConcurrency = 16
)

// ErrCheckFailed is returned by Run when a step found a missing or stale
// key, or a node whose storage does not match what it owns.
var ErrCheckFailed = errors.New("shape check failed")

// Config is one run of the check.
type Config struct {
	// Binary is the adaptkv executable the nodes run. Required.
	Binary string
	// Insecure runs the nodes plaintext (--insecure); by default they use
	// mutual TLS with certificates made in Out/certs.
	Insecure bool
	// Out is the folder for results.md, results.json and the nodes'
	// data and logs. Required.
	Out string
	// Keys is how many keys are loaded at quorum before the first change.
	Keys int
	// Add is how many nodes are added, one at a time, after the three
	// the cluster starts with.
	Add int
	// Decommission lists the nodes taken off afterwards, one at a time;
	// nil means as many as were added: the added ones, newest first, or
	// with FromFirst n1, n2, ...
	Decommission []string
	// Replace lists the nodes killed with SIGKILL and replaced, one at a
	// time, after the adds and before the decommissions: each is killed,
	// a new node is started with --replace, and once it is normal and the
	// dead one left every key is checked to have its copies on its
	// owners. A replaced node is not decommissioned later.
	Replace []string
	// FromFirst, with Decommission nil, decommissions n1, n2, ... (the
	// nodes the cluster started with, the metadata leader among them)
	// rather than the added ones.
	FromFirst bool
	// WriteRate caps the writer's acknowledged writes per second.
	WriteRate int
	// Concurrency is how many requests the load and the checks keep in
	// flight.
	Concurrency int
	// StepTimeout bounds each change (a node becoming normal, or left).
	StepTimeout time.Duration
	// CleanupWait is how long after a change each node's storage may take
	// to match what it owns before an on-demand cleanup runs.
	CleanupWait time.Duration
	// NodeArgs are extra flags for every node.
	NodeArgs []string
	// Command is the command line, for the results.
	Command string
	// Logger receives the launcher's logs; nil discards them.
	Logger *slog.Logger
}

// NodeCheck is what one node's storage holds after a change and its
// cleanup.
type NodeCheck struct {
	ID string `json:"id"`
	// Owned is how many of the keys written it is a replica of; Held how
	// many of them its storage has (Admin.LocalGet).
	Owned int `json:"owned"`
	Held  int `json:"held"`
	// Extra counts keys it holds and does not own; Absent acknowledged
	// keys it owns and does not hold.
	Extra  int `json:"extra"`
	Absent int `json:"absent"`
	// Scanned and Removed are the node's part of an on-demand
	// Admin.CleanupKeyspace run after the check: scanned counts every
	// record the node holds, so it must equal Held.
	Scanned uint64 `json:"cleanup_scanned"`
	Removed uint64 `json:"cleanup_removed"`
	Err     string `json:"error,omitempty"`
}

// Step is one change and the checks after it.
type Step struct {
	Name  string `json:"name"`
	Nodes int    `json:"nodes"`
	// ChangeSeconds is from the node's start (or the decommission call)
	// until the ring says normal (or left).
	ChangeSeconds float64 `json:"change_seconds"`
	// WritesAcked and WriteErrors are the writer's during the change.
	WritesAcked int64 `json:"writes_acked"`
	WriteErrors int64 `json:"write_errors"`
	// Keys is how many acknowledged keys were read back at quorum.
	Keys       int      `json:"acknowledged_keys"`
	Missing    int      `json:"missing"`
	Stale      int      `json:"stale"`
	ReadErrors int      `json:"read_errors"`
	Examples   []string `json:"examples,omitempty"`
	// CleanupSeconds is how long after the change each node's storage
	// matched what it owns; CleanupAuto is false when it did not within
	// StepTimeout and an on-demand cleanup had to run.
	CleanupSeconds float64 `json:"cleanup_seconds"`
	CleanupAuto    bool    `json:"cleanup_automatic"`
	// OnDemandRemoved is how many records that on-demand cleanup removed.
	OnDemandRemoved uint64      `json:"on_demand_removed"`
	PerNode         []NodeCheck `json:"nodes_storage"`
	OK              bool        `json:"ok"`
}

// Result is the run's outcome.
type Result struct {
	Command string    `json:"command"`
	Start   time.Time `json:"start"`
	Config  struct {
		Keys, Add, WriteRate  int
		Replace, Decommission []string
	} `json:"config"`
	Steps []Step `json:"steps"`
	OK    bool   `json:"ok"`
}

// run is the state of one run.
type run struct {
	cfg Config
	out io.Writer
	lc  *launch.Cluster
	kv  *client.Client
	rf  int

	seq atomic.Uint64
	mu  sync.Mutex
	// acked is each acknowledged key's last acknowledged sequence
	// number (the value written); tried the keys written whose every
	// write failed, which may or may not be stored.
	acked map[string]uint64
	tried map[string]bool
	// gate pauses the writer (Lock) while storage is checked: a write in
	// flight may be on some of its replicas only.
	gate             sync.RWMutex
	writes, writeErr atomic.Int64
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Binary == "" || cfg.Out == "" {
		return cfg, errors.New("shape: Binary and Out are required")
	}
	if cfg.Keys <= 0 {
		cfg.Keys = DefaultKeys
	}
	if cfg.Add < 0 {
		return cfg, fmt.Errorf("shape: Add %d: want 0 or more", cfg.Add)
	}
	if cfg.WriteRate <= 0 {
		cfg.WriteRate = DefaultWriteRate
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 5 * time.Minute
	}
	if cfg.CleanupWait <= 0 {
		cfg.CleanupWait = time.Minute
	}
	if cfg.Decommission == nil {
		for i := range cfg.Add {
			if cfg.FromFirst {
				cfg.Decommission = append(cfg.Decommission, fmt.Sprintf("n%d", i+1))
			} else {
				cfg.Decommission = append(cfg.Decommission, fmt.Sprintf("n%d", 3+cfg.Add-i))
			}
		}
	}
	return cfg, nil
}

// Run runs the check, printing progress lines on out, and writes
// results.md and results.json in cfg.Out. It returns ErrCheckFailed (with
// the result) when a check failed.
func Run(ctx context.Context, cfg Config, out io.Writer) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Command: cfg.Command, Start: time.Now().UTC()}
	res.Config.Keys, res.Config.Add, res.Config.WriteRate, res.Config.Decommission = cfg.Keys, cfg.Add, cfg.WriteRate, cfg.Decommission
	res.Config.Replace = cfg.Replace
	r := &run{cfg: cfg, out: out, acked: make(map[string]uint64), tried: make(map[string]bool)}
	res, err = r.steps(ctx, res)
	if werr := writeResults(cfg.Out, res); werr != nil && err == nil {
		err = werr
	}
	r.progress("results in %s", filepath.Join(cfg.Out, "results.md"))
	if err == nil && !res.OK {
		err = ErrCheckFailed
	}
	return res, err
}

// steps starts the cluster and runs every step, adding each to res; on an
// error res holds the steps done.
func (r *run) steps(ctx context.Context, res *Result) (*Result, error) {
	cfg := r.cfg
	defer r.close()
	if err := r.start(ctx); err != nil {
		return res, err
	}

	r.progress("loading %d keys at quorum", cfg.Keys)
	begin := time.Now()
	if err := r.load(ctx); err != nil {
		return res, err
	}
	r.progress("loaded in %.1fs", time.Since(begin).Seconds())
	step := Step{Name: "load", Nodes: 3}
	if err := r.check(ctx, &step, time.Now()); err != nil {
		return res, err
	}
	res.Steps = append(res.Steps, step)

	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.writer(wctx) }()
	defer func() { stopWriter(); wg.Wait() }()

	for range cfg.Add {
		step, err := r.add(ctx)
		res.Steps = append(res.Steps, step)
		if err != nil {
			return res, err
		}
	}
	for _, id := range cfg.Replace {
		step, err := r.replace(ctx, id)
		res.Steps = append(res.Steps, step)
		if err != nil {
			return res, err
		}
	}
	for _, id := range cfg.Decommission {
		step, err := r.decommission(ctx, id)
		res.Steps = append(res.Steps, step)
		if err != nil {
			return res, err
		}
	}
	stopWriter()
	wg.Wait()
	res.OK = true
	for _, s := range res.Steps {
		res.OK = res.OK && s.OK
	}
	return res, nil
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.out, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

var q = client.WithConsistency(client.Quorum)

// start starts the three nodes and connects the client; close ends
// them, also after a failed start.
func (r *run) start(ctx context.Context) error {
	lcfg := launch.Config{Binary: r.cfg.Binary, Nodes: 3, Dir: filepath.Join(r.cfg.Out, "nodes"), Insecure: r.cfg.Insecure,
		Args: append([]string{"--log-level", "warn"}, r.cfg.NodeArgs...), Name: "shape check", Logger: r.cfg.Logger}
	if !r.cfg.Insecure {
		if err := lcfg.Secure(filepath.Join(r.cfg.Out, "certs")); err != nil {
			return err
		}
	}
	lc, err := launch.New(lcfg)
	if err != nil {
		return err
	}
	r.lc = lc
	r.progress("starting 3 nodes under %s", r.cfg.Out)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = lc.Start(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("starting the cluster: %w", err)
	}
	r.kv, err = client.New(ctx, lc.ClientConfig(client.Config{Endpoints: lc.Endpoints(), RequestTimeout: 5 * time.Second}))
	if err != nil {
		return err
	}
	ks, err := r.kv.DescribeKeyspace(ctx, client.DefaultKeyspace)
	if err != nil {
		return err
	}
	r.rf = ks.ReplicationFactor
	return nil
}

func (r *run) close() {
	if r.kv != nil {
		r.kv.Close()
	}
	if r.lc != nil {
		r.lc.StopAll(10 * time.Second)
	}
}

// put writes key at quorum with the next sequence number and records the
// outcome.
func (r *run) put(ctx context.Context, key string) error {
	s := r.seq.Add(1)
	_, err := r.kv.Put(ctx, []byte(key), []byte(strconv.FormatUint(s, 10)), q)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if _, ok := r.acked[key]; !ok {
			r.tried[key] = true
		}
		return err
	}
	if s > r.acked[key] {
		r.acked[key] = s
	}
	delete(r.tried, key)
	return nil
}

func (r *run) load(ctx context.Context) error {
	keys := make(chan string)
	errs := make(chan error, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				var err error
				for attempt := range 3 {
					if err = r.put(ctx, k); err == nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("loading %s: %w", k, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range r.cfg.Keys {
		select {
		case keys <- fmt.Sprintf("k%06d", i):
		case err = <-errs:
			break feed
		}
	}
	close(keys)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// writer writes at quorum until ctx ends, at most WriteRate a second: one
// write in four a new key, the others overwrite a loaded key.
func (r *run) writer(ctx context.Context) {
	rnd := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(time.Second / time.Duration(r.cfg.WriteRate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := fmt.Sprintf("k%06d", rnd.IntN(r.cfg.Keys))
		if n%4 == 0 {
			key = fmt.Sprintf("w%06d", n/4)
		}
		r.gate.RLock()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.put(wctx, key)
		cancel()
		r.gate.RUnlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.writeErr.Add(1)
		} else {
			r.writes.Add(1)
		}
	}
}

// add adds one node and checks.
func (r *run) add(ctx context.Context) (Step, error) {
	n, err := r.lc.AddNode("")
	if err != nil {
		return Step{}, err
	}
	step := Step{Name: "add " + n.ID, Nodes: r.liveNodes() + 1}
	w0, e0 := r.writes.Load(), r.writeErr.Load()
	r.progress("adding %s (grpc %s) under the writer", n.ID, n.GRPC)
	begin := time.Now()
	if err := r.lc.StartNode(n.ID); err != nil {
		return step, err
	}
	if err := r.waitRing(ctx, n.ID, "normal", begin); err != nil {
		return step, err
	}
	step.ChangeSeconds = time.Since(begin).Seconds()
	step.WritesAcked, step.WriteErrors = r.writes.Load()-w0, r.writeErr.Load()-e0
	r.progress("%s is normal after %.1fs (%d writes acknowledged, %d failed meanwhile)", n.ID, step.ChangeSeconds, step.WritesAcked, step.WriteErrors)
	return step, r.check(ctx, &step, time.Now())
}

// replace kills node id with SIGKILL, starts a node in its place with
// --replace, and checks once the new node is normal and id has left: the
// check's storage pass finds every key on each of its owners (the new
// node's copies come from the surviving replicas only).
func (r *run) replace(ctx context.Context, id string) (Step, error) {
	if r.lc.Node(id) == nil {
		return Step{}, fmt.Errorf("replace %s: no such node", id)
	}
	w0, e0 := r.writes.Load(), r.writeErr.Load()
	r.progress("killing %s (SIGKILL) under the writer", id)
	begin := time.Now()
	if err := r.lc.Kill(id); err != nil {
		return Step{}, fmt.Errorf("kill %s: %w", id, err)
	}
	if err := r.lc.MarkRemoved(id); err != nil {
		return Step{}, err
	}
	n, err := r.lc.AddReplacement("", id)
	if err != nil {
		return Step{}, err
	}
	step := Step{Name: "replace " + id + " by " + n.ID, Nodes: r.liveNodes() + 1}
	r.progress("starting %s (grpc %s) with --replace %s", n.ID, n.GRPC, id)
	if err := r.lc.StartNode(n.ID); err != nil {
		return step, err
	}
	if err := r.waitRing(ctx, n.ID, "normal", begin); err != nil {
		return step, err
	}
	if err := r.waitRing(ctx, id, "left", begin); err != nil {
		return step, err
	}
	step.ChangeSeconds = time.Since(begin).Seconds()
	step.WritesAcked, step.WriteErrors = r.writes.Load()-w0, r.writeErr.Load()-e0
	r.progress("%s is normal and %s left %.1fs after the kill (%d writes acknowledged, %d failed meanwhile)", n.ID, id, step.ChangeSeconds, step.WritesAcked, step.WriteErrors)
	return step, r.check(ctx, &step, time.Now())
}

// decommission takes node id off the ring and checks.
func (r *run) decommission(ctx context.Context, id string) (Step, error) {
	n := r.lc.Node(id)
	if n == nil {
		return Step{}, fmt.Errorf("decommission %s: no such node", id)
	}
	step := Step{Name: "decommission " + id, Nodes: r.liveNodes() - 1}
	var other string
	for _, o := range r.lc.Nodes() {
		if o.ID != id && !o.Removed() && o.State() == launch.Running {
			other = o.GRPC
			break
		}
	}
	creds, err := r.lc.DialOption()
	if err != nil {
		return step, err
	}
	conn, err := grpc.NewClient(other, creds)
	if err != nil {
		return step, err
	}
	defer conn.Close()
	w0, e0 := r.writes.Load(), r.writeErr.Load()
	r.progress("decommissioning %s through %s under the writer", id, other)
	begin := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for {
		_, err = kvpb.NewAdminClient(conn).DecommissionNode(cctx, &kvpb.DecommissionNodeRequest{Id: id})
		// Right after the replace before it, the metadata voters may still
		// be electing a leader; the node says to try again, as the CLI
		// does.
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no leader") || cctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	if err != nil {
		return step, fmt.Errorf("decommission %s: %w", id, err)
	}
	if err := r.waitRing(ctx, id, "left", begin); err != nil {
		return step, err
	}
	step.ChangeSeconds = time.Since(begin).Seconds()
	step.WritesAcked, step.WriteErrors = r.writes.Load()-w0, r.writeErr.Load()-e0
	// A decommissioned node ends its own process; stop it if it has not.
	deadline := time.Now().Add(20 * time.Second)
	for n.State() != launch.Stopped && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	exited := n.State() == launch.Stopped
	if !exited {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.lc.Stop(sctx, id)
		cancel()
	}
	if err := r.lc.MarkRemoved(id); err != nil {
		return step, err
	}
	r.progress("%s left after %.1fs (%d writes acknowledged, %d failed meanwhile); its process exited by itself: %v", id, step.ChangeSeconds, step.WritesAcked, step.WriteErrors, exited)
	return step, r.check(ctx, &step, time.Now())
}

func (r *run) liveNodes() int {
	k := 0
	for _, n := range r.lc.Nodes() {
		if !n.Removed() && n.State() == launch.Running {
			k++
		}
	}
	return k
}

// waitRing waits until the cluster places id in ring state want ("left"
// also when the members no longer list it).
func (r *run) waitRing(ctx context.Context, id, want string, begin time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
	defer cancel()
	last := ""
	for {
		if n := r.lc.Node(id); want != "left" && n.State() == launch.Stopped {
			return fmt.Errorf("%s exited: %s; see %s", id, launch.LastLogLine(n.LogFile), n.LogFile)
		}
		if st, err := r.kv.ClusterStatus(ctx); err == nil {
			state := "not listed"
			for _, m := range st.Members {
				if m.ID == id {
					state = m.RingState
				}
			}
			if state == "not listed" && want == "left" {
				state = "left"
			}
			if state != last {
				r.progress("  %s %s (%.1fs)", id, state, time.Since(begin).Seconds())
				last = state
			}
			if state == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is still %s after %v", id, last, time.Since(begin).Round(time.Second))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// check reads every acknowledged key at quorum (the writer running), then
// pauses the writer and checks each node's storage.
func (r *run) check(ctx context.Context, step *Step, changed time.Time) error {
	r.mu.Lock()
	snap := make(map[string]uint64, len(r.acked))
	for k, v := range r.acked {
		snap[k] = v
	}
	r.mu.Unlock()
	step.Keys = len(snap)
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var mu sync.Mutex
	note := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	parallel(r.cfg.Concurrency, keys, func(k string) {
		var res *client.GetResult
		var err error
		for attempt := range 3 {
			if res, err = r.kv.Get(ctx, []byte(k), q); err == nil {
				break
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		switch {
		case err != nil:
			note(func() { step.ReadErrors++; step.example(fmt.Sprintf("get %s: %v", k, err)) })
		case !res.Found:
			note(func() { step.Missing++; step.example(fmt.Sprintf("%s missing (acknowledged #%d)", k, snap[k])) })
		default:
			got, perr := strconv.ParseUint(string(res.Value), 10, 64)
			if perr != nil || got < snap[k] {
				note(func() { step.Stale++; step.example(fmt.Sprintf("%s = %q, acknowledged #%d", k, res.Value, snap[k])) })
			}
		}
	})
	r.progress("  read %d acknowledged keys at quorum: %d missing, %d stale, %d errors", step.Keys, step.Missing, step.Stale, step.ReadErrors)

	r.gate.Lock()
	defer r.gate.Unlock()
	if err := r.checkStorage(ctx, step, changed); err != nil {
		return err
	}
	step.OK = step.Missing == 0 && step.Stale == 0 && step.ReadErrors == 0
	for _, nc := range step.PerNode {
		step.OK = step.OK && nc.Extra == 0 && nc.Absent == 0 && nc.Err == "" && nc.Scanned == uint64(nc.Held)
	}
	verdict := "ok"
	if !step.OK {
		verdict = "FAILED"
	}
	r.progress("  %s: %s", step.Name, verdict)
	return nil
}

func (s *Step) example(e string) {
	if len(s.Examples) < 5 {
		s.Examples = append(s.Examples, e)
	}
}

// parallel calls f for every item, n at a time.
func parallel[T any](n int, items []T, f func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ch {
				f(k)
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}

// checkStorage waits until every ring member's storage holds exactly the
// written keys it owns (the automatic cleanup after a change removes the
// others), running an on-demand cleanup if that does not happen within
// StepTimeout, then records each node's figures and the on-demand
// cleanup's per-node report, whose scanned count must equal what the node
// holds: a node holding a key outside those written would show there.
func (r *run) checkStorage(ctx context.Context, step *Step, changed time.Time) error {
	st, err := r.kv.ClusterStatus(ctx)
	if err != nil {
		return err
	}
	var rms []ring.Member
	for _, m := range st.Members {
		switch m.RingState {
		case "normal":
			rms = append(rms, ring.Member{ID: m.ID, Zone: m.Zone})
		case "left", "":
		default:
			return fmt.Errorf("after %s, %s is %s on the ring", step.Name, m.ID, m.RingState)
		}
	}
	slices.SortFunc(rms, func(a, b ring.Member) int { return strings.Compare(a.ID, b.ID) })
	rg := ring.New(rms, st.Vnodes)
	r.mu.Lock()
	acked := make(map[string]bool, len(r.acked)+len(r.tried))
	for k := range r.acked {
		acked[k] = true
	}
	for k := range r.tried {
		acked[k] = false
	}
	r.mu.Unlock()
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	owners := make(map[string][]string, len(keys))
	for _, k := range keys {
		owners[k] = rg.PreferenceList(client.DefaultKeyspace, []byte(k), r.rf)
	}

	type pair struct{ node, key string }
	held := make(map[pair]bool)
	var mu sync.Mutex
	var lookupErr error
	probe := func(ps []pair) {
		parallel(r.cfg.Concurrency, ps, func(p pair) {
			rec, err := r.kv.LocalGet(ctx, p.node, client.DefaultKeyspace, []byte(p.key))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				lookupErr = fmt.Errorf("local get %s on %s: %w", p.key, p.node, err)
				return
			}
			held[p] = rec.Found
		})
	}
	var all []pair
	for _, m := range rms {
		for _, k := range keys {
			all = append(all, pair{m.ID, k})
		}
	}
	wrong := func(ps []pair) []pair {
		var bad []pair
		for _, p := range ps {
			owns := slices.Contains(owners[p.key], p.node)
			if (held[p] && !owns) || (!held[p] && owns && acked[p.key]) {
				bad = append(bad, p)
			}
		}
		return bad
	}
	probe(all)
	if lookupErr != nil {
		return lookupErr
	}
	bad := wrong(all)
	r.progress("  storage: %d of %d (node, key) pairs do not match ownership yet", len(bad), len(all))
	step.CleanupAuto = true
	deadline := changed.Add(r.cfg.CleanupWait)
	for len(bad) > 0 {
		if time.Now().After(deadline) {
			for _, p := range bad {
				owns := slices.Contains(owners[p.key], p.node)
				e := fmt.Sprintf("%v after the change: %s holds %s: %v, owns it: %v (owners %v)", r.cfg.CleanupWait, p.node, p.key, held[p], owns, owners[p.key])
				step.example(e)
				r.progress("  %s", e)
			}
			r.progress("  the storage did not match ownership within %v; running keyspace cleanup", r.cfg.CleanupWait)
			step.CleanupAuto = false
			cl, err := r.kv.CleanupKeyspace(ctx, client.DefaultKeyspace)
			if err != nil {
				return fmt.Errorf("keyspace cleanup: %w", err)
			}
			for _, c := range cl {
				step.OnDemandRemoved += c.KeysRemoved
			}
			r.progress("  keyspace cleanup removed %d records", step.OnDemandRemoved)
			probe(bad)
			bad = wrong(bad)
			break
		}
		time.Sleep(time.Second)
		probe(bad)
		if lookupErr != nil {
			return lookupErr
		}
		bad = wrong(bad)
	}
	step.CleanupSeconds = time.Since(changed).Seconds()
	res, err := r.kv.CleanupKeyspace(ctx, client.DefaultKeyspace)
	if err != nil {
		return fmt.Errorf("keyspace cleanup: %w", err)
	}
	report := make(map[string]client.CleanupResult)
	for _, c := range res {
		report[c.NodeID] = c
	}
	for _, m := range rms {
		nc := NodeCheck{ID: m.ID}
		for _, k := range keys {
			p := pair{m.ID, k}
			owns := slices.Contains(owners[k], m.ID)
			if owns && acked[k] {
				nc.Owned++
			}
			if held[p] {
				nc.Held++
			}
			if held[p] && !owns {
				nc.Extra++
			}
			if !held[p] && owns && acked[k] {
				nc.Absent++
			}
		}
		c, ok := report[m.ID]
		switch {
		case !ok:
			nc.Err = "not in the cleanup's report"
		case c.Err != "":
			nc.Err = c.Err
		}
		nc.Scanned, nc.Removed = c.KeysScanned, c.KeysRemoved
		step.PerNode = append(step.PerNode, nc)
		r.progress("  %s owns %d, holds %d (extra %d, absent %d); cleanup scanned %d, removed %d %s", nc.ID, nc.Owned, nc.Held, nc.Extra, nc.Absent, nc.Scanned, nc.Removed, nc.Err)
	}
	return nil
}

func writeResults(dir string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(Markdown(res)), 0o644)
}

// Markdown renders the result as results.md.
func Markdown(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Shape check\n\n`%s`, started %s.\n\n", res.Command, res.Start.Format(time.RFC3339))
	replaced := ""
	if len(res.Config.Replace) > 0 {
		replaced = fmt.Sprintf("%s killed (SIGKILL) and replaced, ", strings.Join(res.Config.Replace, ", "))
	}
	fmt.Fprintf(&b, "%d keys loaded at quorum; %d nodes added one at a time, then %s%s decommissioned, while a writer writes at quorum (at most %d/s, one write in four a new key).\n\n",
		res.Config.Keys, res.Config.Add, replaced, strings.Join(res.Config.Decommission, ", "), res.Config.WriteRate)
	b.WriteString("| step | nodes | change (s) | writes acked / failed during it | acknowledged keys read | missing | stale | read errors | per node: owned / held (extra, absent) | cleanup done after (s) | on-demand cleanup: scanned = held, removed | ok |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|---:|---|---|---|---|\n")
	for _, s := range res.Steps {
		var per, cl []string
		eq := true
		var removed uint64
		for _, n := range s.PerNode {
			per = append(per, fmt.Sprintf("%s %d/%d", n.ID, n.Owned, n.Held))
			if n.Extra+n.Absent > 0 {
				per[len(per)-1] += fmt.Sprintf(" (%d, %d)", n.Extra, n.Absent)
			}
			eq = eq && n.Scanned == uint64(n.Held)
			removed += n.Removed
		}
		cl = append(cl, fmt.Sprintf("%v, %d", eq, removed))
		auto := fmt.Sprintf("%.1f", s.CleanupSeconds)
		if !s.CleanupAuto {
			auto = fmt.Sprintf("not within %.0f; on demand, removed %d", s.CleanupSeconds, s.OnDemandRemoved)
		}
		ok := "yes"
		if !s.OK {
			ok = "**NO**"
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %d / %d | %d | %d | %d | %d | %s | %s | %s | %s |\n", s.Name, s.Nodes, s.ChangeSeconds,
			s.WritesAcked, s.WriteErrors, s.Keys, s.Missing, s.Stale, s.ReadErrors, strings.Join(per, ", "), auto, strings.Join(cl, ""), ok)
	}
	for _, s := range res.Steps {
		for _, e := range s.Examples {
			fmt.Fprintf(&b, "\n- %s: %s", s.Name, e)
		}
	}
	verdict := "PASS"
	if !res.OK {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\n\nVerdict: **%s**\n", verdict)
	return b.String()
}
