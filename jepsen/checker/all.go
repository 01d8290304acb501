package checker

import (
	"context"
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// Workloads and the checkers each one gets.
var workloadCheckers = map[string][]string{
	"register":     {"linearizable", "staleness", "no-phantom", "convergence", "perf"},
	"cas-register": {"linearizable", "staleness", "no-phantom", "convergence", "perf"},
	"set":          {"set", "staleness", "no-phantom", "convergence", "perf"},
	"session":      {"session", "staleness", "no-phantom", "convergence", "perf"},
}

// Checkers returns the names of the checkers run for a workload, or an
// error for an unknown workload.
func Checkers(workload string) ([]string, error) {
	cs, ok := workloadCheckers[workload]
	if !ok {
		return nil, fmt.Errorf("checker: unknown workload %q (want register, cas-register, set or session)", workload)
	}
	return cs, nil
}

// Options configure Check.
type Options struct {
	// LinearTimeout bounds Porcupine's check of each key.
	LinearTimeout time.Duration
	// Visualize is the path of the linearizability visualization, written
	// only when the check fails; empty disables it.
	Visualize string
}

// Check runs every checker of the workload over the history and returns
// their results in a fixed order, with the combined verdict.
func Check(ctx context.Context, workload string, ops []history.Op, opts Options) (Validity, []Result, error) {
	names, err := Checkers(workload)
	if err != nil {
		return Unknown, nil, err
	}
	var out []Result
	var verdicts []Validity
	for _, name := range names {
		var r Result
		switch name {
		case "linearizable":
			r = Linearizable(ctx, ops, LinearOptions{Timeout: opts.LinearTimeout, Visualize: opts.Visualize, Annotations: Annotations(ops)})
		case "set":
			r = Set(ops)
		case "session":
			r = Session(ops)
		case "staleness":
			r = Staleness(ops)
		case "no-phantom":
			r = NoPhantom(ops)
		case "convergence":
			r = Convergence(ops)
		case "perf":
			r = Perf(ops)
		}
		out = append(out, r)
		verdicts = append(verdicts, r.Valid)
	}
	return Merge(verdicts...), out, nil
}

// Annotations turns the history's fault windows into Porcupine annotations
// for the visualization.
func Annotations(ops []history.Op) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, w := range history.FaultWindows(ops) {
		out = append(out, porcupine.Annotation{
			Tag: "nemesis", Start: w.Start, End: w.End, Description: w.Kind, Details: w.Detail,
			BackgroundColor: "#f8d7da",
		})
	}
	return out
}
