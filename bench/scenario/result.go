package scenario

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Result is everything a run measured; results.json is its JSON.
type Result struct {
	// Command is the command line that ran the experiment.
	Command string    `json:"command"`
	Config  RunConfig `json:"config"`
	Machine Machine   `json:"machine"`
	// Started and Finished bound the run; T0 is when phase 1 began, the
	// origin of every offset (…S fields, in seconds).
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	T0       time.Time  `json:"t0"`
	Nodes    []NodeInfo `json:"nodes"`
	Arms     []Arm      `json:"arms"`
	// TunerStartS is when the adaptive arm first got traffic (warm-up
	// included), the start of the tuner's first minute.
	TunerStartS float64       `json:"tuner_start_s"`
	Phases      []PhaseResult `json:"phases"`
	Decisions   []Decision    `json:"decisions"`
	// Health are the gray-failure detector's decisions during the run
	// (flags and reinstatements), OffsetS from T0.
	Health   []HealthEvent  `json:"health,omitempty"`
	Timeline []Point        `json:"timeline"`
	Verdicts []PhaseVerdict `json:"verdicts"`
	// PassWhole and PassSteady: every phase passed on that basis.
	PassWhole  bool `json:"pass_whole"`
	PassSteady bool `json:"pass_steady"`
}

// RunConfig is the Config a run used, with durations spelled out.
type RunConfig struct {
	Seed              int64   `json:"seed"`
	PhaseDuration     string  `json:"phase_duration"`
	Keys              int     `json:"keys"`
	Concurrency       int     `json:"concurrency"`
	Rate              int     `json:"rate"`
	Slice             string  `json:"slice"`
	Schedule          string  `json:"schedule"`
	Warmup            string  `json:"warmup"`
	Settle            string  `json:"settle"`
	ValueSize         int     `json:"value_size"`
	IntraZoneDelay    string  `json:"intra_zone_delay"`
	CrossZoneDelay    string  `json:"cross_zone_delay"`
	SlowNode          string  `json:"slow_node"`
	SlowDelay         string  `json:"slow_delay"`
	TunerInterval     string  `json:"tuner_interval"`
	TunerDwell        string  `json:"tuner_dwell"`
	HealthWindow      string  `json:"health_window,omitempty"`
	MaxStale          float64 `json:"max_stale"`
	AdaptiveReadP99   string  `json:"adaptive_read_p99,omitempty"`
	ReadAfterWriteMax string  `json:"read_after_write_max"`
}

func runConfigOf(cfg Config) RunConfig {
	rc := RunConfig{
		Seed: cfg.Seed, PhaseDuration: cfg.PhaseDuration.String(), Keys: cfg.Keys, Concurrency: cfg.Concurrency,
		Rate: cfg.Rate, Slice: cfg.Slice.String(), Schedule: "interleaved", Warmup: cfg.Warmup.String(), Settle: cfg.Settle.String(),
		ValueSize: cfg.ValueSize, IntraZoneDelay: cfg.IntraZoneDelay.String(), CrossZoneDelay: cfg.CrossZoneDelay.String(),
		SlowNode: cfg.SlowNode, SlowDelay: cfg.SlowDelay.String(), TunerInterval: cfg.TunerInterval.String(),
		TunerDwell: cfg.TunerDwell.String(), HealthWindow: cfg.HealthWindow.String(), MaxStale: cfg.MaxStale, ReadAfterWriteMax: cfg.ReadAfterWriteMax.String(),
	}
	if cfg.AdaptiveReadP99 > 0 {
		rc.AdaptiveReadP99 = cfg.AdaptiveReadP99.String()
	}
	return rc
}

// PhaseResult is one phase's measurements.
type PhaseResult struct {
	Phase
	// StartS, SteadyFromS and EndS are offsets from T0.
	StartS      float64 `json:"start_s"`
	SteadyFromS float64 `json:"steady_from_s"`
	EndS        float64 `json:"end_s"`
	// Arms holds each arm's figures, in arm order.
	Arms []ArmFigures `json:"arms"`
	// PredictionWhole and PredictionSteady set the tuner's prediction
	// beside the adaptive arm's measurement.
	PredictionWhole  Prediction `json:"prediction_whole"`
	PredictionSteady Prediction `json:"prediction_steady"`
	// WhatIf is the model's view of every configuration at the phase's end.
	WhatIf []WhatIfCandidate `json:"what_if,omitempty"`
	// AdaptiveByConfig breaks the adaptive arm's figures down by the
	// configuration the tuner had in force (whole phase).
	AdaptiveByConfig []ConfigFigures `json:"adaptive_by_config,omitempty"`
	// TunerReasons counts the tuner's decisions in the phase by reason
	// (hold, small_gain, dwell, cheaper, step_back, …).
	TunerReasons map[string]int `json:"tuner_reasons,omitempty"`
	// NodeCounters are node metrics summed over the cluster, as increases
	// over the phase (see nodeCounters).
	NodeCounters map[string]float64 `json:"node_counters,omitempty"`
	// Notes are things that went wrong in the phase (a hook that failed).
	Notes []string `json:"notes,omitempty"`
}

// ArmFigures are one arm's figures in one phase: over the whole phase and
// over its steady part (after Settle).
type ArmFigures struct {
	Arm    string  `json:"arm"`
	Whole  Figures `json:"whole"`
	Steady Figures `json:"steady"`
}

// arm returns the figures of the named arm.
func (p *PhaseResult) arm(name string) ArmFigures {
	for _, a := range p.Arms {
		if a.Arm == name {
			return a
		}
	}
	return ArmFigures{Arm: name}
}

// Point is one slice of one arm: the time series behind the plot.
type Point struct {
	Arm    string  `json:"arm"`
	Phase  string  `json:"phase"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	Figures
	// rec holds the adaptive arm's slice samples until the run ends.
	rec *recorder
}

// ConfigFigures are the adaptive arm's figures over the slices of a phase
// during which one configuration was in force throughout.
type ConfigFigures struct {
	Config string `json:"config"`
	Slices int    `json:"slices"`
	Figures
}

// byConfig breaks the adaptive arm's slices of a phase down by the
// configuration in force, which the changed decisions give. A slice during
// which the configuration changed is left out, as is one before the first
// decision seen.
func byConfig(timeline []Point, ds []Decision, phase string) []ConfigFigures {
	type change struct {
		at float64
		to string
	}
	var changes []change
	for _, d := range ds {
		if d.Changed {
			changes = append(changes, change{d.OffsetS, d.To})
		}
	}
	inForce := func(s float64) (string, int) {
		cfg, n := "", 0
		for i, c := range changes {
			if c.at <= s {
				cfg, n = c.to, i+1
			}
		}
		if n == 0 && len(ds) > 0 && ds[0].OffsetS <= s {
			cfg = ds[0].From // no change yet: the configuration decided from
		}
		return cfg, n
	}
	recs := map[string]*recorder{}
	count := map[string]int{}
	var order []string
	for _, pt := range timeline {
		if pt.Arm != ArmAdaptive || pt.Phase != phase || pt.rec == nil {
			continue
		}
		c0, n0 := inForce(pt.StartS)
		c1, n1 := inForce(pt.EndS)
		if c0 == "" || n0 != n1 || c0 != c1 {
			continue
		}
		if recs[c0] == nil {
			recs[c0] = newRecorder()
			order = append(order, c0)
		}
		recs[c0].merge(pt.rec)
		count[c0]++
	}
	var out []ConfigFigures
	for _, c := range order {
		out = append(out, ConfigFigures{Config: c, Slices: count[c], Figures: recs[c].figures()})
	}
	return out
}

// Machine describes where the run happened.
type Machine struct {
	Hostname  string  `json:"hostname"`
	OS        string  `json:"os"`
	Arch      string  `json:"arch"`
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model,omitempty"`
	MemoryGB  float64 `json:"memory_gb,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
	GoVersion string  `json:"go_version"`
}

// String is a one-line description.
func (m Machine) String() string {
	s := m.Hostname + ": " + m.OS + "/" + m.Arch + ", " + strconv.Itoa(m.CPUs) + " CPUs"
	if m.CPUModel != "" {
		s += " (" + m.CPUModel + ")"
	}
	if m.MemoryGB > 0 {
		s += ", " + strconv.FormatFloat(m.MemoryGB, 'f', 0, 64) + " GB RAM"
	}
	if m.Kernel != "" {
		s += ", kernel " + m.Kernel
	}
	return s + ", " + m.GoVersion
}

// thisMachine describes the machine the run is on, from /proc where there
// is one.
func thisMachine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					m.MemoryGB = kb / (1 << 20)
				}
				break
			}
		}
		f.Close()
	}
	return m
}

// HealthEvent is one health decision of the cluster's gray-failure
// detector: a node flagged or reinstated.
type HealthEvent struct {
	At      time.Time `json:"at"`
	OffsetS float64   `json:"offset_s"`
	Node    string    `json:"node"`
	Flag    bool      `json:"flag"`
	Reason  string    `json:"reason"`
}
