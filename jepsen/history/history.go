package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Type is the kind of event an Op records.
type Type string

// Event types.
const (
	// Invoke starts an operation.
	Invoke Type = "invoke"
	// OK completes an operation that took effect.
	OK Type = "ok"
	// Fail completes an operation that certainly had no effect.
	Fail Type = "fail"
	// Info completes an operation whose effect is unknown; for the nemesis
	// and phase markers it is the only type used.
	Info Type = "info"
)

// Operation functions (Op.F).
const (
	// FRead reads one key.
	FRead = "read"
	// FWrite writes one key (register and session workloads).
	FWrite = "write"
	// FCas is a compare-and-set of one key (the cas-register workload): it
	// writes Value if the key holds From (0: if the key is absent). A
	// completion of type fail with NotApplied set is a definite answer that
	// the condition did not hold; its Value (nil: absent) and Version are
	// the key's current record as the store reported it.
	FCas = "cas"
	// FAdd adds one element to the set: it writes the element's own key.
	FAdd = "add"
	// FReadAll is the set's final read: a scan of every element key, whose
	// result is in Values.
	FReadAll = "read-all"
	// FReplicaRead is the convergence probe: one replica's own stored
	// record of a key (Node is the replica), read without quorum or repair.
	FReplicaRead = "replica-read"
	// FPhase marks the start of a run phase (Phase holds its name).
	FPhase = "phase"
)

// Special process numbers.
const (
	// NemesisProcess is the process of fault events.
	NemesisProcess = -1
	// ProbeProcess is the process of the harness's own probes (phase
	// markers, convergence reads).
	ProbeProcess = -2
)

// Run phases, in order.
const (
	PhaseSetup    = "setup"
	PhaseWarmup   = "warmup"
	PhaseFaults   = "faults"
	PhaseHeal     = "heal"
	PhaseRecovery = "recovery"
	PhaseConverge = "converge"
	PhaseFinal    = "final"
	PhaseCheck    = "check"
)

// Version is a stored version as the store reports it: a hybrid logical
// clock timestamp and the coordinating node's number. Greater wins.
type Version struct {
	Timestamp uint64 `json:"ts"`
	Node      uint32 `json:"node"`
}

// Less reports whether v orders before o (last writer wins order).
func (v Version) Less(o Version) bool {
	if v.Timestamp != o.Timestamp {
		return v.Timestamp < o.Timestamp
	}
	return v.Node < o.Node
}

// IsZero reports whether v is the zero version (a key never written).
func (v Version) IsZero() bool { return v == Version{} }

// WallTime is the wall-clock part of the timestamp (Unix milliseconds).
func (v Version) WallTime() time.Time { return time.UnixMilli(int64(v.Timestamp >> 16)) }

// Fault describes a nemesis action.
type Fault struct {
	// Kind is the fault: kill, pause, partition, clock, slow, drop-writes.
	Kind string `json:"kind"`
	// Shape is the partition's shape (halves, ring, one, bridge) or the
	// target choice (one, minority, majority, all).
	Shape string `json:"shape,omitempty"`
	// Targets are the node IDs affected.
	Targets []string `json:"targets,omitempty"`
	// Grudge maps a node to the nodes whose packets it drops.
	Grudge map[string][]string `json:"grudge,omitempty"`
	// Offset is a clock skew ("-2.5s"), Delay an injected latency.
	Offset string `json:"offset,omitempty"`
	Delay  string `json:"delay,omitempty"`
	// Verified says how the fault was proven to have taken effect.
	Verified string `json:"verified,omitempty"`
}

// Op is one event of the history.
type Op struct {
	// Index is the event's position in the history, from 0.
	Index int `json:"index"`
	// Time is nanoseconds since the run's start, from a monotonic clock.
	Time int64 `json:"time"`
	// Process is the logical process (NemesisProcess, ProbeProcess for the
	// harness's own events).
	Process int `json:"process"`
	// Client is the worker that ran the process; it persists across the
	// fresh process numbers that follow info completions, and is the
	// session of the session workload.
	Client int `json:"client"`
	// Type is invoke, ok, fail or info.
	Type Type `json:"type"`
	// F is the function: read, write, add, read-all, replica-read, phase,
	// or a nemesis action such as start-partition.
	F string `json:"f"`
	// Key is the key operated on.
	Key string `json:"key,omitempty"`
	// Value is the integer written, or read (nil: the key was not found);
	// for a cas that did not apply, the current value it found.
	Value *int64 `json:"value,omitempty"`
	// From is a cas's expected value (0: the key must be absent).
	From *int64 `json:"from,omitempty"`
	// NotApplied marks a cas completion whose condition did not hold.
	NotApplied bool `json:"not_applied,omitempty"`
	// Values is a read-all's result: the elements found.
	Values []int64 `json:"values,omitempty"`
	// Raw is a read value that is not an integer the harness wrote.
	Raw string `json:"raw,omitempty"`
	// Level is the consistency level asked for.
	Level string `json:"level,omitempty"`
	// Node is the coordinator from the receipt, the replica of a
	// replica-read, or the node a fault hit.
	Node string `json:"node,omitempty"`
	// Epoch is the keyspace configuration epoch from the receipt.
	Epoch uint64 `json:"epoch,omitempty"`
	// Version is the version written (from the write's receipt) or read.
	Version *Version `json:"version,omitempty"`
	// Acked and Required are the replicas that answered and the R or W
	// required, from the receipt or from a quorum error.
	Acked    int `json:"acked,omitempty"`
	Required int `json:"required,omitempty"`
	// N is the keyspace's replication factor from the receipt.
	N int `json:"n,omitempty"`
	// Tombstone is set on a replica-read of a deleted key.
	Tombstone bool `json:"tombstone,omitempty"`
	// Phase is the run phase the event happened in.
	Phase string `json:"phase,omitempty"`
	// Error is the error of a fail or info completion.
	Error string `json:"error,omitempty"`
	// Fault describes a nemesis event.
	Fault *Fault `json:"fault,omitempty"`
}

// Int returns a pointer to v, for Op.Value.
func Int(v int64) *int64 { return &v }

// IsClient reports whether op is a client operation (not nemesis or probe).
func (op *Op) IsClient() bool { return op.Process >= 0 }

// Recorder appends events to a history, assigning indexes and times, and
// streams them to a JSON lines writer. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	base  time.Time
	ops   []Op
	w     *bufio.Writer
	enc   *json.Encoder
	err   error
	phase string
}

// NewRecorder returns a Recorder whose times count from base. w may be nil
// (memory only).
func NewRecorder(base time.Time, w io.Writer) *Recorder {
	r := &Recorder{base: base}
	if w != nil {
		r.w = bufio.NewWriterSize(w, 1<<16)
		r.enc = json.NewEncoder(r.w)
	}
	return r
}

// Now returns the current time in history nanoseconds.
func (r *Recorder) Now() int64 { return int64(time.Since(r.base)) }

// Base returns the instant times count from.
func (r *Recorder) Base() time.Time { return r.base }

// SetPhase records the start of a phase; later events carry its name.
func (r *Recorder) SetPhase(phase string) {
	r.mu.Lock()
	r.phase = phase
	r.mu.Unlock()
	r.Append(Op{Process: ProbeProcess, Client: ProbeProcess, Type: Info, F: FPhase, Phase: phase})
}

// Phase returns the current phase.
func (r *Recorder) Phase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// Append stamps op with the next index, the current time (unless op.Time is
// already set) and the current phase (unless set), records it and returns it.
func (r *Recorder) Append(op Op) Op {
	now := r.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	if op.Time == 0 {
		op.Time = now
	}
	if op.Phase == "" {
		op.Phase = r.phase
	}
	r.ops = append(r.ops, op)
	if r.enc != nil && r.err == nil {
		r.err = r.enc.Encode(&op)
	}
	return op
}

// Len returns the number of events recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// Ops returns a copy of the events recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Op, len(r.ops))
	copy(out, r.ops)
	return out
}

// Flush writes buffered events out and returns the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		r.err = r.w.Flush()
	}
	if r.err != nil {
		return fmt.Errorf("history: write: %w", r.err)
	}
	return nil
}

// Write writes ops to w as JSON lines.
func Write(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return fmt.Errorf("history: encode op %d: %w", ops[i].Index, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("history: write: %w", err)
	}
	return nil
}

// Read parses a JSON lines history. A truncated last line (a run that was
// cut off mid-write) is ignored; any other malformed line is an error.
func Read(rd io.Reader) ([]Op, error) {
	br := bufio.NewReaderSize(rd, 1<<16)
	var ops []Op
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && !(len(b) == 1 && b[0] == '\n') {
			var op Op
			if jerr := json.Unmarshal(b, &op); jerr != nil {
				if errors.Is(err, io.EOF) {
					break // a partial last line
				}
				return nil, fmt.Errorf("history: line %d: %w", line, jerr)
			}
			ops = append(ops, op)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("history: read: %w", err)
		}
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Index < ops[j].Index })
	return ops, nil
}

// ReadFile reads a JSON lines history file.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Pair is an operation with its completion. Completion is nil when the
// history ended before the operation completed; checkers treat that as info.
type Pair struct {
	Invoke     Op
	Completion *Op
}

// Type returns the completion's type, Info when there is none.
func (p Pair) Type() Type {
	if p.Completion == nil {
		return Info
	}
	return p.Completion.Type
}

// Call is the invocation time.
func (p Pair) Call() int64 { return p.Invoke.Time }

// Return is the completion time; math.MaxInt64-like "never" is left to the
// caller: it returns -1 when there is no completion.
func (p Pair) Return() int64 {
	if p.Completion == nil {
		return -1
	}
	return p.Completion.Time
}

// Pairs matches every client invocation with its process's next
// completion, in invocation order. Nemesis and probe events are skipped.
func Pairs(ops []Op) []Pair {
	open := map[int]int{} // process -> index in out
	var out []Pair
	for i := range ops {
		op := ops[i]
		if !op.IsClient() {
			continue
		}
		if op.Type == Invoke {
			open[op.Process] = len(out)
			out = append(out, Pair{Invoke: op})
			continue
		}
		if j, ok := open[op.Process]; ok {
			c := op
			out[j].Completion = &c
			delete(open, op.Process)
		}
	}
	return out
}

// Window is a span of the run during which a fault was active.
type Window struct {
	Kind  string `json:"kind"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	// Detail describes the fault (targets, shape, offset).
	Detail string `json:"detail,omitempty"`
}

// FaultWindows returns the spans during which faults were active: from
// each nemesis start-X invocation (the fault goes in right after it; the
// completion comes once it has been verified) to the matching stop-X (or
// heal) completion; a fault never stopped lasts to the end of the history.
func FaultWindows(ops []Op) []Window {
	var end int64
	if len(ops) > 0 {
		end = ops[len(ops)-1].Time
	}
	open := map[string]int{}
	invoked := map[string]int64{}
	var out []Window
	for _, op := range ops {
		if op.Process != NemesisProcess {
			continue
		}
		if op.Type == Invoke {
			invoked[op.F] = op.Time
			continue
		}
		if op.Type != Info {
			continue
		}
		switch {
		case strings.HasPrefix(op.F, "start-"):
			kind := strings.TrimPrefix(op.F, "start-")
			detail := ""
			if op.Fault != nil {
				detail = describeFault(op.Fault)
			}
			start := op.Time
			if t, ok := invoked[op.F]; ok && t <= op.Time {
				start = t
			}
			open[kind] = len(out)
			out = append(out, Window{Kind: kind, Start: start, End: end, Detail: detail})
		case strings.HasPrefix(op.F, "stop-"):
			kind := strings.TrimPrefix(op.F, "stop-")
			if i, ok := open[kind]; ok {
				out[i].End = op.Time
				delete(open, kind)
			}
		case op.F == "heal":
			for k, i := range open {
				out[i].End = op.Time
				delete(open, k)
			}
		}
	}
	return out
}

func describeFault(f *Fault) string {
	s := f.Kind
	if f.Shape != "" {
		s += " " + f.Shape
	}
	if len(f.Targets) > 0 {
		s += fmt.Sprintf(" %v", f.Targets)
	}
	if f.Offset != "" {
		s += " offset " + f.Offset
	}
	if f.Delay != "" {
		s += " delay " + f.Delay
	}
	return s
}

// Active reports whether t falls inside any of the windows.
func Active(ws []Window, t int64) bool {
	for _, w := range ws {
		if t >= w.Start && t <= w.End {
			return true
		}
	}
	return false
}
