package bench

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// Op is one kind of operation of a workload.
type Op int

// The operations of the YCSB core workloads.
const (
	// OpRead reads one key.
	OpRead Op = iota
	// OpUpdate overwrites one existing key.
	OpUpdate
	// OpInsert writes a new key, after the loaded ones.
	OpInsert
	// OpScan reads a short range of keys in key order.
	OpScan
	// OpReadModifyWrite reads a key and then writes it (workload F); it is
	// timed and counted as one operation.
	OpReadModifyWrite
	// OpCas is one compare-and-set attempt (workload "cas"): a conditional
	// write of a key expecting the version the worker last saw of it. One
	// whose condition did not hold still counts as an operation, and
	// learns the current version for the next attempt; the report counts
	// those apart (OpResult.NotApplied).
	OpCas
	numOps // the number of operation kinds; not an operation
)

var opNames = [numOps]string{"read", "update", "insert", "scan", "rmw", "cas"}

// String returns the operation's name as it appears in reports and JSON.
func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Workload is a YCSB core workload: the mix of operations and the default
// request distribution. The proportions need not sum to 1; they are
// normalised.
type Workload struct {
	// Name is the YCSB letter, "a" to "f".
	Name string
	// Description says what the workload models, after YCSB's workload
	// files.
	Description string
	// Proportions of each operation.
	Read, Update, Insert, Scan, ReadModifyWrite, Cas float64
	// Distribution is the default request distribution.
	Distribution Distribution
	// MaxScanLength bounds the length of a scan, which is uniform in
	// [1, MaxScanLength] (YCSB's defaults: 100, uniform).
	MaxScanLength int
}

// Workloads are YCSB's core workloads A to F, with YCSB's proportions and
// distributions (workloads/workloada … workloadf in the YCSB repository).
var Workloads = map[string]Workload{
	"a": {Name: "a", Description: "update heavy: 50% read, 50% update (session store)", Read: 0.5, Update: 0.5, Distribution: Zipfian},
	"b": {Name: "b", Description: "read mostly: 95% read, 5% update (photo tagging)", Read: 0.95, Update: 0.05, Distribution: Zipfian},
	"c": {Name: "c", Description: "read only: 100% read (profile cache)", Read: 1, Distribution: Zipfian},
	"d": {Name: "d", Description: "read latest: 95% read, 5% insert (status updates)", Read: 0.95, Insert: 0.05, Distribution: Latest},
	"e": {Name: "e", Description: "short ranges: 95% scan of up to 100 keys, 5% insert (threaded conversations)", Scan: 0.95, Insert: 0.05, Distribution: Zipfian, MaxScanLength: 100},
	"f": {Name: "f", Description: "read-modify-write: 50% read, 50% read-modify-write (user database)", Read: 0.5, ReadModifyWrite: 0.5, Distribution: Zipfian},
	// Not a YCSB workload: compare-and-set throughput (a store that is a
	// CondStore). Without Config.HotKeys each worker has a key of its own
	// (uncontended: every attempt applies); with it, all workers share
	// the hot keys.
	"cas": {Name: "cas", Description: "compare-and-set: 100% conditional writes expecting the version last seen (own key per client, or --hot-keys shared)", Cas: 1, Distribution: Uniform},
}

// ParseWorkload returns the core workload named by its letter, either case.
func ParseWorkload(s string) (Workload, error) {
	w, ok := Workloads[strings.ToLower(strings.TrimPrefix(strings.ToLower(s), "workload"))]
	if !ok {
		names := make([]string, 0, len(Workloads))
		for n := range Workloads {
			names = append(names, n)
		}
		sort.Strings(names)
		return Workload{}, fmt.Errorf("unknown workload %q: want one of %s", s, strings.Join(names, ", "))
	}
	return w, nil
}

func (w Workload) proportion(o Op) float64 {
	switch o {
	case OpRead:
		return w.Read
	case OpUpdate:
		return w.Update
	case OpInsert:
		return w.Insert
	case OpScan:
		return w.Scan
	case OpReadModifyWrite:
		return w.ReadModifyWrite
	case OpCas:
		return w.Cas
	}
	return 0
}

// Ops returns the operations the workload uses, in Op order.
func (w Workload) Ops() []Op {
	var out []Op
	for o := range numOps {
		if w.proportion(o) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// OpChooser draws operations in a workload's proportions. It is immutable
// and safe for concurrent use.
type OpChooser struct {
	ops []Op
	cum []float64 // cumulative normalised proportions; the last is 1
}

// NewOpChooser returns the chooser for w, or an error when w has no
// operation with a positive proportion.
func NewOpChooser(w Workload) (*OpChooser, error) {
	var total float64
	for o := range numOps {
		p := w.proportion(o)
		if p < 0 {
			return nil, fmt.Errorf("workload %s: negative proportion %v for %s", w.Name, p, o)
		}
		total += p
	}
	if total <= 0 {
		return nil, fmt.Errorf("workload %s: no operation has a positive proportion", w.Name)
	}
	c := &OpChooser{}
	var acc float64
	for _, o := range w.Ops() {
		acc += w.proportion(o) / total
		c.ops = append(c.ops, o)
		c.cum = append(c.cum, acc)
	}
	c.cum[len(c.cum)-1] = 1 // no rounding gap at the top
	return c, nil
}

// Next draws an operation.
func (c *OpChooser) Next(r *rand.Rand) Op {
	u := r.Float64()
	for i, p := range c.cum {
		if u < p {
			return c.ops[i]
		}
	}
	return c.ops[len(c.ops)-1]
}
