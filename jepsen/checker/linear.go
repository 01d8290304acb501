package checker

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// RegisterInput is a register operation for Porcupine: a read, a write of
// Value, or (Cas) a compare-and-set of From to Value, on Key. From 0 asks
// for the key to be absent.
type RegisterInput struct {
	Key   string
	Write bool
	Cas   bool
	From  int64
	Value int64
}

// mutates reports whether the operation may change the register.
func (in RegisterInput) mutates() bool { return in.Write || in.Cas }

// RegisterOutput is a register operation's result: the value read (0 for a
// key not found; the harness writes values from 1), Unknown for a write or
// cas whose outcome is unknown (an info completion, return time
// +infinity), and NotApplied for a cas whose condition did not hold, with
// Value the current value the store answered with.
type RegisterOutput struct {
	Value      int64
	Unknown    bool
	NotApplied bool
}

// OpMeta annotates a Porcupine operation for the visualization.
type OpMeta struct {
	Index   int // history index of the invocation
	Process int
	Node    string
	Level   string
	Epoch   uint64
}

// RegisterModel is the Porcupine model of a set of independent integer
// registers, partitioned per key: a history is linearizable iff each key's
// is. The initial value of every register is 0 (not found).
var RegisterModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(RegisterInput).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(int64), input.(RegisterInput), output.(RegisterOutput)
		switch {
		case in.Write:
			return true, in.Value
		case in.Cas && out.Unknown:
			// Linearized where the register holds From it applies; where it
			// does not, it is a no-op. Not applying at all is the same as
			// applying after every other operation (its return is never),
			// so one deterministic step covers both outcomes.
			if st == in.From {
				return true, in.Value
			}
			return true, st
		case in.Cas && out.NotApplied:
			// The condition failed on the value the answer reports, which
			// must be the register's value at that point.
			return st != in.From && out.Value == st, st
		case in.Cas:
			return st == in.From, in.Value
		}
		return out.Value == st, st
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(RegisterInput), output.(RegisterOutput)
		switch {
		case in.Cas:
			from := "nil"
			if in.From != 0 {
				from = fmt.Sprint(in.From)
			}
			switch {
			case out.Unknown:
				return fmt.Sprintf("cas(%s, %s -> %d) ?", in.Key, from, in.Value)
			case out.NotApplied && out.Value == 0:
				return fmt.Sprintf("cas(%s, %s -> %d) not applied, nil", in.Key, from, in.Value)
			case out.NotApplied:
				return fmt.Sprintf("cas(%s, %s -> %d) not applied, %d", in.Key, from, in.Value, out.Value)
			}
			return fmt.Sprintf("cas(%s, %s -> %d)", in.Key, from, in.Value)
		case in.Write && out.Unknown:
			return fmt.Sprintf("write(%s, %d) ?", in.Key, in.Value)
		case in.Write:
			return fmt.Sprintf("write(%s, %d)", in.Key, in.Value)
		case out.Value == 0:
			return fmt.Sprintf("read(%s) -> nil", in.Key)
		}
		return fmt.Sprintf("read(%s) -> %d", in.Key, out.Value)
	},
	DescribeState: func(state any) string {
		if state.(int64) == 0 {
			return "nil"
		}
		return fmt.Sprint(state.(int64))
	},
	DescribeOperationMetadata: func(info any) string {
		m, ok := info.(OpMeta)
		if !ok {
			return ""
		}
		return fmt.Sprintf("#%d p%d via %s at %s, epoch %d", m.Index, m.Process, m.Node, m.Level, m.Epoch)
	},
}

// Never is the return time of an operation that may complete at any point
// after its call: an info write.
const Never = int64(math.MaxInt64)

// RegisterOperations converts a history's reads, writes and cas operations
// to Porcupine operations: ok reads, writes and cas as they happened, info
// writes and cas (and those the history ended before completing) with
// Return = Never and Unknown output, a cas that did not apply as a
// NotApplied cas with the current value it reported; other failed writes
// and cas, and failed or info reads, are left out, as they carry no
// information. Values that are not integers (Raw) become -1, which no
// write produces.
func RegisterOperations(ops []history.Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, p := range history.Pairs(ops) {
		f := p.Invoke.F
		if f != history.FRead && f != history.FWrite && f != history.FCas {
			continue
		}
		meta := OpMeta{Index: p.Invoke.Index, Process: p.Invoke.Process, Level: p.Invoke.Level}
		if p.Completion != nil {
			meta.Node, meta.Epoch = p.Completion.Node, p.Completion.Epoch
		}
		op := porcupine.Operation{ClientId: p.Invoke.Process, Call: p.Call(), Metadata: meta}
		switch t := p.Type(); {
		case f == history.FCas:
			if p.Invoke.Value == nil {
				continue
			}
			in := RegisterInput{Key: p.Invoke.Key, Cas: true, Value: *p.Invoke.Value}
			if p.Invoke.From != nil {
				in.From = *p.Invoke.From
			}
			op.Input = in
			switch {
			case t == history.OK:
				op.Output, op.Return = RegisterOutput{}, p.Return()
			case t == history.Fail && p.Completion.NotApplied:
				op.Output, op.Return = RegisterOutput{NotApplied: true, Value: observed(p.Completion)}, p.Return()
			case t == history.Fail:
				continue // nothing written: no information
			default:
				op.Output, op.Return = RegisterOutput{Unknown: true}, Never
			}
		case f == history.FWrite && t == history.Fail:
			continue
		case f == history.FWrite:
			if p.Invoke.Value == nil {
				continue
			}
			op.Input = RegisterInput{Key: p.Invoke.Key, Write: true, Value: *p.Invoke.Value}
			if t == history.OK {
				op.Output, op.Return = RegisterOutput{}, p.Return()
			} else {
				op.Output, op.Return = RegisterOutput{Unknown: true}, Never
			}
		case t != history.OK:
			continue // a read that failed says nothing
		default:
			op.Input = RegisterInput{Key: p.Invoke.Key}
			op.Output, op.Return = RegisterOutput{Value: observed(p.Completion)}, p.Return()
		}
		out = append(out, op)
	}
	return out
}

// observed is the value a completion reports reading: 0 for absent, -1 for
// bytes the harness never writes.
func observed(c *history.Op) int64 {
	switch {
	case c.Raw != "":
		return -1
	case c.Value != nil:
		return *c.Value
	}
	return 0
}

// LinearStats are the linearizability checker's figures.
type LinearStats struct {
	// Operations and Keys checked; Info is the writes with unknown outcome.
	Operations int `json:"operations"`
	Keys       int `json:"keys"`
	Info       int `json:"info_writes"`
	// Illegal and UnknownKeys list the keys that are not linearizable and
	// those whose check timed out.
	Illegal     []string `json:"illegal_keys,omitempty"`
	UnknownKeys []string `json:"unknown_keys,omitempty"`
	// CheckSeconds is the time Porcupine took.
	CheckSeconds float64 `json:"check_seconds"`
}

// LinearOptions configure Linearizable.
type LinearOptions struct {
	// Timeout bounds the check of each key; 0 means no bound.
	Timeout time.Duration
	// Visualize, when set, is the path of Porcupine's HTML visualization,
	// written when the history is not linearizable (of the failing keys).
	Visualize string
	// Annotations are added to the visualization (fault windows).
	Annotations []porcupine.Annotation
}

// Linearizable checks the register history with Porcupine, key by key in
// parallel, and names for each failing key the operation at which its
// history stops being linearizable: the first completion in time order
// after which no linearization exists.
func Linearizable(ctx context.Context, ops []history.Op, opts LinearOptions) Result {
	start := time.Now()
	pops := RegisterOperations(ops)
	parts := RegisterModel.Partition(pops)
	st := LinearStats{Operations: len(pops), Keys: len(parts)}
	for _, op := range pops {
		if op.Output.(RegisterOutput).Unknown {
			st.Info++
		}
	}
	verdicts := make([]porcupine.CheckResult, len(parts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				verdicts[i] = porcupine.Unknown
				return
			}
			defer func() { <-sem }()
			verdicts[i] = porcupine.CheckOperationsTimeout(RegisterModel, part, opts.Timeout)
		}()
	}
	wg.Wait()

	res := Result{Name: "linearizable"}
	var illegal [][]porcupine.Operation
	pairs := history.Pairs(ops)
	byIndex := make(map[int]history.Pair, len(pairs))
	for _, p := range pairs {
		byIndex[p.Invoke.Index] = p
	}
	for i, part := range parts {
		key := part[0].Input.(RegisterInput).Key
		switch verdicts[i] {
		case porcupine.Illegal:
			st.Illegal = append(st.Illegal, key)
			illegal = append(illegal, part)
			res.add(explainIllegal(key, part, byIndex, opts.Timeout))
		case porcupine.Unknown:
			st.UnknownKeys = append(st.UnknownKeys, key)
		}
	}
	st.CheckSeconds = round3(time.Since(start).Seconds())
	switch {
	case len(st.Illegal) > 0:
		res.Valid = Invalid
		res.Summary = fmt.Sprintf("NOT linearizable: %d of %d keys (%s); %d operations checked in %.2fs",
			len(st.Illegal), st.Keys, strings.Join(firstN(st.Illegal, 5), ", "), st.Operations, st.CheckSeconds)
	case len(st.UnknownKeys) > 0:
		res.Valid = Unknown
		res.Summary = fmt.Sprintf("unknown: the check of %d keys timed out (%s)", len(st.UnknownKeys), strings.Join(firstN(st.UnknownKeys, 5), ", "))
	default:
		res.Valid = Valid
		res.Summary = fmt.Sprintf("linearizable: %d operations (%d info writes) on %d keys checked in %.2fs", st.Operations, st.Info, st.Keys, st.CheckSeconds)
	}
	res.Stats = st
	if res.Valid == Invalid && opts.Visualize != "" {
		var flat []porcupine.Operation
		for _, p := range illegal {
			flat = append(flat, p...)
		}
		_, info := porcupine.CheckOperationsVerbose(RegisterModel, flat, opts.Timeout)
		info.AddAnnotations(opts.Annotations)
		if err := porcupine.VisualizePath(RegisterModel, info, opts.Visualize); err != nil {
			res.Summary += fmt.Sprintf(" (visualization not written: %v)", err)
		}
	}
	return res
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), "...")
}

// prefix returns the part of a key's history that had happened by time t:
// operations invoked by t, those not complete by t becoming pending (writes
// with unknown outcome, reads dropped).
func prefix(part []porcupine.Operation, t int64) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range part {
		if op.Call > t {
			continue
		}
		if op.Return > t {
			in := op.Input.(RegisterInput)
			if !in.mutates() {
				continue
			}
			op.Return, op.Output = Never, RegisterOutput{Unknown: true}
		}
		out = append(out, op)
	}
	return out
}

// explainIllegal finds the completion at which the key's history stops
// being linearizable (non-linearizability is preserved by extending a
// history, so a binary search over completion times finds the first one)
// and describes it with the writes around it.
func explainIllegal(key string, part []porcupine.Operation, byIndex map[int]history.Pair, timeout time.Duration) Anomaly {
	var times []int64
	for _, op := range part {
		if op.Return != Never {
			times = append(times, op.Return)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	lo, hi := 0, len(times)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if porcupine.CheckOperationsTimeout(RegisterModel, prefix(part, times[mid]), timeout) == porcupine.Illegal {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	a := Anomaly{Type: "non-linearizable", Key: key}
	if len(times) == 0 {
		a.Description = fmt.Sprintf("key %s: no linearization exists", key)
		return a
	}
	cut := times[lo]
	var culprit *porcupine.Operation
	for i := range part {
		if part[i].Return == cut {
			culprit = &part[i]
			break
		}
	}
	cm := culprit.Metadata.(OpMeta)
	cp := byIndex[cm.Index]
	a.Time = cut
	a.Ops = []int{cm.Index}
	var b strings.Builder
	fmt.Fprintf(&b, "key %s: no linearization once %s completed", key, opRef(cp))
	in, out := culprit.Input.(RegisterInput), culprit.Output.(RegisterOutput)
	if !in.mutates() || out.NotApplied {
		// Name the write whose value was read, and the writes that had
		// completed before the read began (one of them should have been
		// visible).
		for _, op := range part {
			if wi := op.Input.(RegisterInput); wi.mutates() && wi.Value == out.Value {
				wp := byIndex[op.Metadata.(OpMeta).Index]
				fmt.Fprintf(&b, "; the value read was written by %s", opRef(wp))
				a.Ops = append(a.Ops, wp.Invoke.Index)
			}
		}
		var before []porcupine.Operation
		for _, op := range part {
			if op.Input.(RegisterInput).mutates() && op.Return < culprit.Call {
				before = append(before, op)
			}
		}
		sort.Slice(before, func(i, j int) bool { return before[i].Return > before[j].Return })
		if len(before) > 3 {
			before = before[:3]
		}
		if len(before) > 0 {
			b.WriteString("; writes completed before the read began (latest first):")
			for _, op := range before {
				wp := byIndex[op.Metadata.(OpMeta).Index]
				fmt.Fprintf(&b, " %s;", opRef(wp))
				a.Ops = append(a.Ops, wp.Invoke.Index)
			}
		}
		// Reads that had already returned another value: evidence that a
		// newer value was visible before this read began.
		var seen []porcupine.Operation
		for _, op := range part {
			if ri := op.Input.(RegisterInput); !ri.mutates() && op.Return < culprit.Call && op.Output.(RegisterOutput).Value != out.Value {
				seen = append(seen, op)
			}
		}
		sort.Slice(seen, func(i, j int) bool { return seen[i].Return > seen[j].Return })
		if len(seen) > 2 {
			seen = seen[:2]
		}
		if len(seen) > 0 {
			b.WriteString("; reads that returned another value before it began:")
			for _, op := range seen {
				rp := byIndex[op.Metadata.(OpMeta).Index]
				fmt.Fprintf(&b, " %s;", opRef(rp))
				a.Ops = append(a.Ops, rp.Invoke.Index)
			}
		}
	}
	a.Description = strings.TrimSuffix(b.String(), ";")
	return a
}
