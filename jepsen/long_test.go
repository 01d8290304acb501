package jepsen

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/checker"
)

// TestLong is the long run, off unless JEPSEN_LONG gives the length of each
// run's fault phase (e.g. 3m); JEPSEN_SEEDS lists the seeds (default
// 1,2,3) and JEPSEN_OUT keeps the run folders (default a temporary
// directory, removed on success). For every seed it runs the cases whose
// guarantees the documentation claims and fails on any violated one:
//
//	set      quorum  partition,kill,pause  nothing lost, no stale quorum read, converged
//	set      one     partition,kill        nothing lost once healed, converged
//	session  quorum  partition,kill,pause  read-your-writes, monotonic reads
//	register quorum  partition,kill,pause  reported (quorum is not claimed linearizable)
//	set      quorum  membership:add,kill,partition  nodes join (up to 3): nothing lost, no stale quorum read, converged
//	session  quorum  membership:add,kill,partition  read-your-writes, monotonic reads while nodes join
//
//	JEPSEN_LONG=3m JEPSEN_SEEDS=1,2,3 go test ./jepsen -run TestLong -v -timeout 4h
func TestLong(t *testing.T) {
	length := os.Getenv("JEPSEN_LONG")
	if length == "" {
		t.Skip("the long run is off; run it with JEPSEN_LONG=3m JEPSEN_SEEDS=1,2,3 go test ./jepsen -run TestLong -v -timeout 4h")
	}
	d, err := time.ParseDuration(length)
	if err != nil {
		t.Fatalf("JEPSEN_LONG=%q: %v", length, err)
	}
	needCluster(t)
	needNet(t)
	seeds := []uint64{1, 2, 3}
	if s := os.Getenv("JEPSEN_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("JEPSEN_SEEDS=%q: %v", s, err)
			}
			seeds = append(seeds, n)
		}
	}
	out := os.Getenv("JEPSEN_OUT")
	if out == "" {
		out = t.TempDir()
	}
	cases := []struct {
		workload, level, nemesis string
		must                     []string // checkers that must be valid
	}{
		{WorkloadSet, "quorum", "partition,kill,pause", []string{"set", "staleness", "no-phantom", "convergence"}},
		{WorkloadSet, "one", "partition,kill", []string{"set", "no-phantom", "convergence"}},
		{WorkloadSession, "quorum", "partition,kill,pause", []string{"session", "staleness", "no-phantom"}},
		{WorkloadRegister, "quorum", "partition,kill,pause", []string{"staleness", "no-phantom"}},
		{WorkloadSet, "quorum", "membership:add,kill,partition", []string{"set", "staleness", "no-phantom", "convergence"}},
		{WorkloadSession, "quorum", "membership:add,kill,partition", []string{"session", "staleness", "no-phantom"}},
	}
	for _, seed := range seeds {
		for _, c := range cases {
			name := fmt.Sprintf("%s-%s-%s-seed%d", c.workload, c.level, strings.NewReplacer(",", "+", ":", "_").Replace(c.nemesis), seed)
			t.Run(name, func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Workload, cfg.Consistency, cfg.Nemesis, cfg.Seed = c.workload, []string{c.level}, c.nemesis, seed
				cfg.Time = Duration(d)
				cfg.Out = filepath.Join(out, name)
				cfg.Bin = nodeBin
				cfg.Progress = logWriter{t}
				res := run(t, cfg)
				for _, name := range c.must {
					if r := checkerOf(t, res, name); r.Valid != checker.Valid {
						t.Errorf("%s: %v: %s", name, r.Valid, r.Summary)
					}
				}
				if lin := res.Checker("linearizable"); lin != nil {
					t.Logf("linearizability at %s (reported, not claimed): %s", c.level, lin.Summary)
				}
			})
		}
	}
}
