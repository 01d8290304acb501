package jepsen

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/jepsen/nemesis"
)

// Duration is a time.Duration that reads and writes JSON as "10s".
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "10s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration %s: %w", b, err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Workloads.
const (
	// WorkloadRegister: reads and writes of unique integers per key,
	// checked for linearizability with Porcupine.
	WorkloadRegister = "register"
	// WorkloadCasRegister: reads, writes and compare-and-sets (PutIf
	// IfValue, IfAbsent on a fresh key) of unique integers per key, at
	// the linearizable level by default, checked with Porcupine against a
	// register with cas.
	WorkloadCasRegister = "cas-register"
	// WorkloadSet: unique elements added as keys, all of which must be
	// found by the final read.
	WorkloadSet = "set"
	// WorkloadSession: each client reads and writes its own keys and checks
	// read-your-writes and monotonic reads.
	WorkloadSession = "session"
)

// Client modes.
const (
	// ClientsRouted: one shared SDK client that routes each key to a
	// replica (token-aware).
	ClientsRouted = "routed"
	// ClientsPinned: each worker talks to one node only, which then
	// coordinates every request, replica of the key or not.
	ClientsPinned = "pinned"
	// ClientsMixed: half the workers routed, half pinned.
	ClientsMixed = "mixed"
	// ClientsHop: each worker talks to one node at a time and moves to the
	// next at its first read after a write. A key's writes are coordinated
	// by every node in turn, replicas of the key or not, and a node
	// coordinates a client's write only after the client read the key
	// through it since another node wrote it: the mode that tests that a
	// coordinator orders its writes after what it read (the session
	// checker's read-then-write and read-your-writes checks) when it never
	// saw the key's last write itself.
	ClientsHop = "hop"
)

// Config is a run's whole configuration; the run folder's config.json holds
// it, and a run from that file repeats the run (same schedule of operations
// and faults).
type Config struct {
	// Workload is register, cas-register, set or session.
	Workload string `json:"workload"`
	// Consistency lists the levels the workload's reads and writes use
	// (one, quorum, all, linearizable, adaptive); each operation draws one.
	// A cas is a conditional write, linearizable whatever the level.
	Consistency []string `json:"consistency"`
	// Nemesis is the fault list, e.g. "partition,kill" or
	// "partition:ring,clock:one"; "none" for none.
	Nemesis string `json:"nemesis"`
	// NemesisMode is random, all or cycle: which faults a window starts.
	NemesisMode string `json:"nemesis_mode"`
	// NemesisOn and NemesisOff are the lengths of a fault window and of the
	// quiet gap after it.
	NemesisOn  Duration `json:"nemesis_on"`
	NemesisOff Duration `json:"nemesis_off"`
	// ClockMax and SlowMax bound the clock skew and the injected reply
	// delay.
	ClockMax Duration `json:"clock_max"`
	SlowMax  Duration `json:"slow_max"`

	// Nodes is the number of node processes; RF the keyspace's replication
	// factor.
	Nodes int `json:"nodes"`
	RF    int `json:"rf"`

	// Time is the length of the fault phase; WarmUp and Recovery the quiet
	// phases before and after it.
	Time     Duration `json:"time"`
	WarmUp   Duration `json:"warmup"`
	Recovery Duration `json:"recovery"`
	// Rate is the target of operations per second, over all clients;
	// Concurrency the number of clients (workers).
	Rate        float64 `json:"rate"`
	Concurrency int     `json:"concurrency"`
	// Clients is routed, pinned, mixed or hop.
	Clients string `json:"clients"`
	// Sessions makes each worker an SDK session (client.Session): its
	// reads and writes carry the session's token, handed on when the
	// worker moves to another node's client, so that the session checker
	// holds at any level (reads that no replica in reach can serve fail
	// with SESSION_BEHIND instead of answering older data).
	Sessions bool `json:"sessions,omitempty"`
	// Keys is the number of register keys in use at once; OpsPerKey the
	// operations after which a register key is retired for a fresh one
	// (which keeps each key's history small for Porcupine). SessionKeys is
	// each session's own keys.
	Keys        int `json:"keys"`
	OpsPerKey   int `json:"ops_per_key"`
	SessionKeys int `json:"session_keys"`
	// ReadRatio is the fraction of operations that are reads.
	ReadRatio float64 `json:"read_ratio"`
	// MaxOps bounds the operations of a run, whatever the time.
	MaxOps int `json:"max_ops"`
	// Seed draws the operations and the faults.
	Seed uint64 `json:"seed"`

	// OpTimeout is each operation's deadline.
	OpTimeout Duration `json:"op_timeout"`
	// CheckTimeout bounds Porcupine's check of each key.
	CheckTimeout Duration `json:"check_timeout"`
	// ConvergeTimeout bounds the wait for hints to be delivered and
	// replicas to agree after the heal.
	ConvergeTimeout Duration `json:"converge_timeout"`
	// ConvergeRepair runs a repair pass (what `adaptkv keyspace repair`
	// does) when replicas still disagree once the hints are delivered, as
	// an operator would after an outage, and probes again; the summary says
	// how many keys needed it. Without it the convergence checker judges
	// hints and read repair alone.
	ConvergeRepair bool `json:"converge_repair"`
	// HealTimeout bounds the wait for the cluster to be whole again.
	HealTimeout Duration `json:"heal_timeout"`

	// Out is the run folder; empty means store/<workload>-<nemesis>-<level>/<time>.
	Out string `json:"out"`
	// Bin is the adaptkv binary the nodes run; empty means this program.
	Bin string `json:"bin"`
	// FirstIP is node 1's address (node i gets the i-th from it).
	FirstIP string `json:"first_ip"`
	// BasePort is the first of each node's four ports; 0 picks free ones.
	BasePort int `json:"base_port"`
	// Insecure runs the nodes plaintext and unauthenticated (--insecure);
	// by default they are secure, with certificates made in the run
	// folder's certs/.
	Insecure bool `json:"insecure,omitempty"`
	// NodeArgs are extra flags for every node, e.g. --log-level=debug.
	NodeArgs []string `json:"node_args,omitempty"`
	// Adaptive, when set to a floor ("one" or "quorum"), makes the test
	// keyspace adaptive with that floor and AdaptiveMaxStale as its
	// stale-read bound; operations of level "adaptive" then use whatever
	// configuration the tuner has in force.
	Adaptive         string  `json:"adaptive,omitempty"`
	AdaptiveMaxStale float64 `json:"adaptive_max_stale,omitempty"`
	// AdaptiveMaxRF, above RF, lets the tuner choose N between RF and it
	// (and the force hook then walks configurations of both N, growing and
	// shrinking the keyspace under the run's faults).
	AdaptiveMaxRF int `json:"adaptive_max_rf,omitempty"`
	// TunerForce, with Adaptive, moves the keyspace to another safe
	// configuration at this interval (the nodes' --unsafe-tuner-force), so
	// that the run tests configuration changes under its faults.
	TunerForce Duration `json:"tuner_force,omitempty"`
	// KeepData keeps the nodes' data directories of a valid run (they are
	// always kept when a run finds an anomaly).
	KeepData bool `json:"keep_data"`

	// Progress receives a line per second during the run; nil for none.
	Progress io.Writer `json:"-"`
	// Logger receives the harness's logs (they also go to jepsen.log in
	// the run folder); nil for none.
	Logger *slog.Logger `json:"-"`
}

// DefaultConfig returns the defaults of `adaptkv jepsen`.
func DefaultConfig() Config {
	return Config{
		Workload:        WorkloadRegister,
		Consistency:     []string{"quorum"},
		Nemesis:         "none",
		NemesisMode:     nemesis.ModeRandom,
		NemesisOn:       Duration(10 * time.Second),
		NemesisOff:      Duration(10 * time.Second),
		ClockMax:        Duration(10 * time.Second),
		SlowMax:         Duration(500 * time.Millisecond),
		Nodes:           5,
		RF:              3,
		Time:            Duration(60 * time.Second),
		WarmUp:          Duration(3 * time.Second),
		Recovery:        Duration(5 * time.Second),
		Rate:            200,
		Concurrency:     10,
		Clients:         ClientsMixed,
		Keys:            8,
		OpsPerKey:       200,
		SessionKeys:     2,
		ReadRatio:       0.5,
		MaxOps:          1_000_000,
		Seed:            1,
		OpTimeout:       Duration(time.Second),
		CheckTimeout:    Duration(time.Minute),
		ConvergeTimeout: Duration(30 * time.Second),
		ConvergeRepair:  true,
		HealTimeout:     Duration(60 * time.Second),
		FirstIP:         "127.0.0.2",
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch c.Workload {
	case WorkloadRegister, WorkloadCasRegister, WorkloadSet, WorkloadSession:
	default:
		return fmt.Errorf("workload %q: want register, cas-register, set or session", c.Workload)
	}
	if len(c.Consistency) == 0 {
		return errors.New("consistency: give at least one level (one, quorum, all, linearizable)")
	}
	for _, l := range c.Consistency {
		if _, err := parseLevel(l); err != nil {
			return err
		}
		if l == api.AdaptiveName && c.Adaptive == "" {
			return errors.New("consistency adaptive needs an adaptive keyspace: give --adaptive one or --adaptive quorum")
		}
	}
	switch c.Adaptive {
	case "", "one", "quorum":
	default:
		return fmt.Errorf("adaptive %q: want one or quorum (the floor)", c.Adaptive)
	}
	if c.Adaptive == "" && c.TunerForce > 0 {
		return errors.New("tuner-force needs an adaptive keyspace (--adaptive)")
	}
	if c.AdaptiveMaxRF != 0 && (c.Adaptive == "" || c.AdaptiveMaxRF < c.RF || c.AdaptiveMaxRF > c.Nodes) {
		return fmt.Errorf("adaptive-max-rf %d: want an adaptive keyspace (--adaptive) and a value between --rf (%d) and --nodes (%d)", c.AdaptiveMaxRF, c.RF, c.Nodes)
	}
	specs, err := nemesis.ParseSpecs(c.Nemesis)
	if err != nil {
		return err
	}
	if len(specs) > 0 {
		if c.NemesisOn <= 0 {
			return fmt.Errorf("nemesis-on %v: must be positive", c.NemesisOn.D())
		}
		switch c.NemesisMode {
		case nemesis.ModeRandom, nemesis.ModeAll, nemesis.ModeCycle:
		default:
			return fmt.Errorf("nemesis-mode %q: want random, all or cycle", c.NemesisMode)
		}
	}
	if c.Nodes < 1 || c.Nodes > 200 {
		return fmt.Errorf("nodes %d: want 1 to 200", c.Nodes)
	}
	if c.RF < 1 || c.RF > c.Nodes {
		return fmt.Errorf("rf %d: want 1 to the number of nodes (%d)", c.RF, c.Nodes)
	}
	if c.Time < 0 || c.WarmUp < 0 || c.Recovery < 0 {
		return errors.New("time, warmup and recovery must not be negative")
	}
	if c.Rate <= 0 {
		return fmt.Errorf("rate %v: must be positive", c.Rate)
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		return fmt.Errorf("concurrency %d: want 1 to 1000", c.Concurrency)
	}
	switch c.Clients {
	case ClientsRouted, ClientsPinned, ClientsMixed, ClientsHop:
	default:
		return fmt.Errorf("clients %q: want routed, pinned, mixed or hop", c.Clients)
	}
	if c.Keys < 1 || c.OpsPerKey < 1 || c.SessionKeys < 1 {
		return errors.New("keys, ops-per-key and session-keys must be at least 1")
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		return fmt.Errorf("read-ratio %v: want 0 to 1", c.ReadRatio)
	}
	if c.MaxOps < 1 {
		return errors.New("max-ops must be at least 1")
	}
	if c.OpTimeout <= 0 || c.CheckTimeout < 0 || c.ConvergeTimeout <= 0 || c.HealTimeout <= 0 {
		return errors.New("op-timeout, converge-timeout and heal-timeout must be positive, check-timeout not negative")
	}
	return nil
}

// specs returns the parsed fault list (Validate has checked it).
func (c *Config) specs() []nemesis.Spec {
	s, _ := nemesis.ParseSpecs(c.Nemesis)
	return s
}

// defaultOut is store/<workload>-<nemesis>-<levels>/<time>.
func (c *Config) defaultOut(now time.Time) string {
	name := fmt.Sprintf("%s-%s-%s", c.Workload, strings.NewReplacer(",", "+", ":", "_").Replace(nemesis.FormatSpecs(c.specs())), strings.Join(c.Consistency, "+"))
	return filepath.Join("store", name, now.Format("20060102T150405.000"))
}

// Command returns the `adaptkv jepsen` command line that repeats the run.
func (c *Config) Command() string {
	d := DefaultConfig()
	args := []string{"adaptkv", "jepsen",
		"--workload", c.Workload,
		"--consistency", strings.Join(c.Consistency, ","),
		"--nemesis", nemesis.FormatSpecs(c.specs()),
		"--nodes", strconv.Itoa(c.Nodes),
		"--time", c.Time.D().String(),
		"--rate", strconv.FormatFloat(c.Rate, 'f', -1, 64),
		"--concurrency", strconv.Itoa(c.Concurrency),
		"--seed", strconv.FormatUint(c.Seed, 10),
	}
	opt := func(name string, v, def any) {
		if fmt.Sprint(v) != fmt.Sprint(def) {
			args = append(args, "--"+name, fmt.Sprint(v))
		}
	}
	opt("nemesis-mode", c.NemesisMode, d.NemesisMode)
	opt("nemesis-on", c.NemesisOn.D(), d.NemesisOn.D())
	opt("nemesis-off", c.NemesisOff.D(), d.NemesisOff.D())
	opt("clock-max", c.ClockMax.D(), d.ClockMax.D())
	opt("slow-max", c.SlowMax.D(), d.SlowMax.D())
	opt("rf", c.RF, d.RF)
	opt("warmup", c.WarmUp.D(), d.WarmUp.D())
	opt("recovery", c.Recovery.D(), d.Recovery.D())
	opt("clients", c.Clients, d.Clients)
	if c.Sessions {
		args = append(args, "--sessions")
	}
	opt("keys", c.Keys, d.Keys)
	opt("ops-per-key", c.OpsPerKey, d.OpsPerKey)
	opt("session-keys", c.SessionKeys, d.SessionKeys)
	opt("read-ratio", c.ReadRatio, d.ReadRatio)
	opt("max-ops", c.MaxOps, d.MaxOps)
	opt("op-timeout", c.OpTimeout.D(), d.OpTimeout.D())
	opt("check-timeout", c.CheckTimeout.D(), d.CheckTimeout.D())
	opt("converge-timeout", c.ConvergeTimeout.D(), d.ConvergeTimeout.D())
	if c.ConvergeRepair != d.ConvergeRepair {
		args = append(args, fmt.Sprintf("--converge-repair=%t", c.ConvergeRepair))
	}
	opt("heal-timeout", c.HealTimeout.D(), d.HealTimeout.D())
	opt("first-ip", c.FirstIP, d.FirstIP)
	if c.Insecure {
		args = append(args, "--insecure")
	}
	opt("adaptive", c.Adaptive, d.Adaptive)
	opt("adaptive-max-stale", c.AdaptiveMaxStale, d.AdaptiveMaxStale)
	opt("adaptive-max-rf", c.AdaptiveMaxRF, d.AdaptiveMaxRF)
	opt("tuner-force", c.TunerForce.D(), d.TunerForce.D())
	for _, a := range c.NodeArgs {
		args = append(args, "--node-arg", a)
	}
	return strings.Join(args, " ")
}

// LoadConfig reads a run folder's config.json (or a config file).
func LoadConfig(path string) (Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var doc struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Config) > 0 {
		b = doc.Config // a run folder's config.json; else a bare Config
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// linearizableName is the name of the linearizable level.
const linearizableName = "linearizable"

func parseLevel(s string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	if pl, _ := api.ParseLevel(l); l == api.AdaptiveName || l == linearizableName || pl == api.LevelOne || pl == api.LevelQuorum || pl == api.LevelAll {
		return l, nil
	}
	return "", fmt.Errorf("consistency level %q: want one, quorum, all, linearizable or adaptive", s)
}

// Plan is what a run will do, computed without running it: the resolved
// configuration, the command line that repeats it, and the fault schedule
// (which depends only on the configuration and the seed).
type Plan struct {
	Config   Config           `json:"config"`
	Command  string           `json:"command"`
	Schedule []nemesis.Window `json:"schedule"`
}

// MakePlan validates cfg and computes its fault schedule.
func MakePlan(cfg Config) (*Plan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	ids := make([]string, cfg.Nodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	sched, err := nemesis.Schedule(nemesis.ScheduleConfig{Specs: cfg.specs(), Nodes: ids, Duration: cfg.Time.D(), On: cfg.NemesisOn.D(), Off: cfg.NemesisOff.D(),
		Mode: cfg.NemesisMode, Seed: cfg.Seed, ClockMax: cfg.ClockMax.D(), SlowMax: cfg.SlowMax.D()})
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	return &Plan{Config: cfg, Command: cfg.Command(), Schedule: sched}, nil
}
