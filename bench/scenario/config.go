package scenario

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultPhaseDuration  = 60 * time.Second
	DefaultKeys           = 1000
	DefaultConcurrency    = 32
	DefaultRate           = 400
	DefaultSlice          = 2 * time.Second
	DefaultValueSize      = 64
	DefaultIntraZoneDelay = time.Millisecond
	DefaultCrossZoneDelay = 20 * time.Millisecond
	DefaultSlowDelay      = 50 * time.Millisecond
	DefaultSlowNode       = "n3"
	DefaultTunerInterval  = time.Second
	// DefaultHealthWindow is the nodes' --health-window. Not the node's 2 s:
	// at the experiment's 400 operations a second, 5% writes, coordinators
	// that read their local replica and rank the slow one last, the slow
	// node is sent about 8 requests a second, fewer than the detector's 20
	// per window, so in 2 s windows it is never judged, let alone flagged.
	// 5 s windows hold about 40 and flag it within about 20 s.
	DefaultHealthWindow = 5 * time.Second
	// DefaultTunerDwell keeps the tuner from retrying a cheaper partial
	// quorum more than about twice a minute after a step back.
	DefaultTunerDwell = 20 * time.Second
	// AdaptiveReadP99Target is the adaptive arm's read latency target.
	AdaptiveReadP99Target    = 10 * time.Millisecond
	DefaultMaxStale          = 0.001
	DefaultReadAfterWriteMax = 10 * time.Millisecond
)

// Config configures a run. The zero value of every field but Binary and Out
// selects a default.
type Config struct {
	// Binary is the adaptkv executable the nodes run. Required.
	Binary string
	// Insecure runs the nodes plaintext (--insecure); by default they use
	// mutual TLS with certificates made in Out/certs.
	Insecure bool
	// Out is the folder for results.json, results.md, plot.png and the
	// nodes' data and logs (Out/nodes). Required; created if missing.
	Out string
	// Seed makes the operation sequence reproducible; every arm of a phase
	// gets the same one.
	Seed int64
	// PhaseDuration is how long each arm runs in each phase (default 60s).
	// The arms are interleaved, so a phase lasts three times this.
	PhaseDuration time.Duration
	// Keys is the number of keys per arm (default 1000). Fewer keys mean
	// hotter keys and more reads soon after a write of the same key.
	Keys int
	// Concurrency is the number of workers issuing operations (default 32).
	// With Rate set it only needs to cover Rate times the slowest latency.
	Concurrency int
	// Rate is the operations per second issued to the running arm (default
	// 400). Negative runs a closed loop: each worker sends its next request
	// when the last returns.
	Rate int
	// Slice is how long one arm runs before the next takes over (default
	// 2s, at most half of PhaseDuration).
	Slice time.Duration
	// Warmup is the unmeasured run of the phase-1 workload before phase 1,
	// in wall time (default min(60s, 3×PhaseDuration)); negative skips it.
	Warmup time.Duration
	// Settle is the start of each phase, in wall time, left out of the
	// steady figures (default min(60s, PhaseDuration), about the span of
	// the tuner's observation window).
	Settle time.Duration
	// ValueSize is the size of written values in bytes (default 64).
	ValueSize int
	// IntraZoneDelay and CrossZoneDelay are the injected one-way delays of
	// requests between nodes of the same zone and of different zones
	// (defaults 1ms and 20ms).
	IntraZoneDelay, CrossZoneDelay time.Duration
	// SlowNode is the node made slow in the slow-replica phase (default
	// n3), by SlowDelay on every reply to a peer (default 50ms).
	SlowNode  string
	SlowDelay time.Duration
	// TunerInterval and TunerDwell are the nodes' --tuner-interval and
	// --tuner-dwell (defaults 1s and 20s): far shorter than the node's
	// defaults, so that the tuner reacts within a phase.
	TunerInterval, TunerDwell time.Duration
	// HealthWindow is the nodes' --health-window, the gray-failure
	// detector's window (default DefaultHealthWindow; negative turns
	// detection off). Three bad windows flag the slow node, which the
	// tuner then routes reads around.
	HealthWindow time.Duration
	// MaxStale is the adaptive arm's stale-read bound (default 0.001).
	MaxStale float64
	// AdaptiveReadP99 is the read p99 target in the adaptive arm's goal
	// (default AdaptiveReadP99Target; negative: none). The tuner's cost
	// weighs read and write latency by their shares, so at 50% writes it
	// is indifferent between fast reads (R=1 W=3) and fast writes (R=3
	// W=1); the target states which one the keyspace wants.
	AdaptiveReadP99 time.Duration
	// ReadAfterWriteMax bounds the delay between a write's acknowledgement
	// and the read that follows it in the write-heavy phase (default 10ms).
	ReadAfterWriteMax time.Duration
	// Command is the command line recorded in the results (default: the
	// process's arguments).
	Command string
	// Logger receives diagnostics (default: discard). Progress lines go to
	// Run's progress writer instead.
	Logger *slog.Logger
}

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Binary == "" {
		return cfg, errors.New("scenario: Config.Binary is required: the adaptkv executable to start nodes with")
	}
	if cfg.Out == "" {
		return cfg, errors.New("scenario: Config.Out is required: the folder for the results")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PhaseDuration", cfg.PhaseDuration}, {"Slice", cfg.Slice}, {"Settle", cfg.Settle},
		{"IntraZoneDelay", cfg.IntraZoneDelay}, {"CrossZoneDelay", cfg.CrossZoneDelay}, {"SlowDelay", cfg.SlowDelay},
		{"TunerInterval", cfg.TunerInterval}, {"TunerDwell", cfg.TunerDwell}, {"ReadAfterWriteMax", cfg.ReadAfterWriteMax},
	} {
		if d.v < 0 {
			return cfg, fmt.Errorf("scenario: Config.%s is negative (%v)", d.name, d.v)
		}
	}
	if cfg.Keys < 0 || cfg.Concurrency < 0 || cfg.ValueSize < 0 {
		return cfg, fmt.Errorf("scenario: Keys (%d), Concurrency (%d) and ValueSize (%d) must not be negative", cfg.Keys, cfg.Concurrency, cfg.ValueSize)
	}
	if cfg.MaxStale < 0 || cfg.MaxStale >= 1 {
		return cfg, fmt.Errorf("scenario: Config.MaxStale %v is outside [0, 1)", cfg.MaxStale)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.PhaseDuration, DefaultPhaseDuration)
	def(&cfg.Slice, DefaultSlice)
	cfg.Slice = min(cfg.Slice, cfg.PhaseDuration/2)
	if cfg.Slice < 100*time.Millisecond {
		return cfg, fmt.Errorf("scenario: a slice of %v is too short to measure; raise PhaseDuration (%v) or Slice", cfg.Slice, cfg.PhaseDuration)
	}
	def(&cfg.Warmup, min(60*time.Second, 3*cfg.PhaseDuration))
	def(&cfg.Settle, min(60*time.Second, cfg.PhaseDuration))
	def(&cfg.IntraZoneDelay, DefaultIntraZoneDelay)
	def(&cfg.CrossZoneDelay, DefaultCrossZoneDelay)
	def(&cfg.SlowDelay, DefaultSlowDelay)
	def(&cfg.TunerInterval, DefaultTunerInterval)
	def(&cfg.TunerDwell, DefaultTunerDwell)
	def(&cfg.HealthWindow, DefaultHealthWindow)
	def(&cfg.ReadAfterWriteMax, DefaultReadAfterWriteMax)
	def(&cfg.AdaptiveReadP99, AdaptiveReadP99Target)
	if cfg.Keys == 0 {
		cfg.Keys = DefaultKeys
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.ValueSize == 0 {
		cfg.ValueSize = DefaultValueSize
	}
	if cfg.SlowNode == "" {
		cfg.SlowNode = DefaultSlowNode
	}
	if cfg.MaxStale == 0 {
		cfg.MaxStale = DefaultMaxStale
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// closedLoop reports whether operations are sent as fast as workers can.
func (cfg Config) closedLoop() bool { return cfg.Rate < 0 }
