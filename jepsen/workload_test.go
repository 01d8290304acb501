package jepsen

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

func TestGeneratorsAreDeterministic(t *testing.T) {
	for _, wl := range []string{WorkloadRegister, WorkloadCasRegister, WorkloadSet, WorkloadSession} {
		cfg := DefaultConfig()
		cfg.Workload, cfg.Consistency, cfg.Concurrency = wl, []string{"one", "quorum", "all"}, 3
		seq := func(seed uint64) []opSpec {
			cfg.Seed = seed
			g := newGenerator(&cfg)
			var out []opSpec
			for i := range 600 {
				out = append(out, g.next(i%3))
			}
			return out
		}
		a, b, c := seq(1), seq(1), seq(2)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: same seed, different operations", wl)
		}
		if reflect.DeepEqual(a, c) {
			t.Errorf("%s: different seeds, same operations", wl)
		}
		// Written values are unique per key, and levels all drawn.
		seen := map[string]map[int64]bool{}
		levels := map[string]bool{}
		reads := 0
		for _, op := range a {
			levels[op.level] = true
			if op.value == nil {
				reads++
				continue
			}
			if seen[op.key] == nil {
				seen[op.key] = map[int64]bool{}
			}
			if seen[op.key][*op.value] || *op.value <= 0 {
				t.Fatalf("%s: value %d written twice to %s", wl, *op.value, op.key)
			}
			seen[op.key][*op.value] = true
		}
		if len(levels) != 3 || reads < 200 || reads > 400 {
			t.Errorf("%s: levels %v, %d reads of 600", wl, levels, reads)
		}
	}
}

// TestCasRegisterGenerator: the cas-register workload mixes writes and
// cas, a fresh key's first cas is from absent, and the others expect a
// value handed out earlier for the same key (mostly the last one), so
// that cas both apply and fail.
func TestCasRegisterGenerator(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Workload, cfg.Consistency, cfg.Keys, cfg.OpsPerKey = WorkloadCasRegister, []string{"linearizable"}, 3, 50
	g := newGenerator(&cfg)
	handed := map[string][]int64{}
	var writes, cas, fromLast, fromAbsent int
	for range 2000 {
		op := g.next(0)
		if !strings.HasPrefix(op.key, casPrefix) || op.level != "linearizable" {
			t.Fatalf("op %+v", op)
		}
		switch op.f {
		case history.FWrite:
			writes++
		case history.FCas:
			cas++
			prior := handed[op.key]
			switch {
			case *op.from == 0:
				fromAbsent++
			case len(prior) > 0 && *op.from == prior[len(prior)-1]:
				fromLast++
			case len(prior) < 2 || *op.from != prior[len(prior)-2]:
				t.Fatalf("cas %+v expects %d, not one of the key's last two values %v", op, *op.from, prior)
			}
		}
		if op.value != nil {
			handed[op.key] = append(handed[op.key], *op.value)
		}
	}
	if writes < 300 || cas < 300 || fromLast < cas/2 || fromAbsent == 0 {
		t.Errorf("%d writes, %d cas (%d from the last value, %d from absent)", writes, cas, fromLast, fromAbsent)
	}
}

func TestRegisterKeysRotate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Keys, cfg.OpsPerKey = 2, 10
	g := newGenerator(&cfg)
	count := map[string]int{}
	for range 100 {
		count[g.next(0).key]++
	}
	for k, n := range count {
		if n > 10 {
			t.Errorf("key %s got %d operations, over 10", k, n)
		}
	}
	if len(g.keys()) < 10 || len(count) < 10 {
		t.Errorf("%d keys used", len(count))
	}
}

func TestSessionKeysAreOwnAndIncreasing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Workload, cfg.Concurrency, cfg.SessionKeys = WorkloadSession, 2, 2
	g := newGenerator(&cfg)
	last := map[string]int64{}
	prev := map[int]opSpec{}
	writes, readThenWrites := 0, 0
	for i := range 400 {
		w := i % 2
		op := g.next(w)
		if op.key[:len(sessionPrefix)+1] != sessionPrefix+string(rune('0'+w)) {
			t.Fatalf("worker %d got key %s", w, op.key)
		}
		if op.value != nil {
			if *op.value <= last[op.key] {
				t.Fatalf("values not increasing on %s", op.key)
			}
			last[op.key] = *op.value
			writes++
			if p := prev[w]; p.f == history.FRead && p.key == op.key {
				readThenWrites++
			}
		}
		prev[w] = op
	}
	// Half the writes are read-then-writes, and a blind write follows a
	// read of its key by chance (a read is 3 draws in 4, and with two keys
	// the same key 1 in 2): about 0.5 + 0.5*0.75*0.5 = 69% of writes.
	if readThenWrites < writes*55/100 || readThenWrites > writes*85/100 {
		t.Errorf("%d of %d writes come right after a read of their key; want 55%% to 85%%", readThenWrites, writes)
	}
}

func cerr(code codes.Code, reason string, unknown bool) error {
	return &client.Error{Op: "x", Code: code, Reason: reason, Unknown: unknown}
}

func TestCompletionType(t *testing.T) {
	tests := []struct {
		name  string
		write bool
		err   error
		want  history.Type
	}{
		{"ok", true, nil, history.OK},
		{"write unknown outcome", true, cerr(codes.Unavailable, client.ReasonQuorumNotReached, true), history.Info},
		{"write timeout", true, cerr(codes.DeadlineExceeded, "", true), history.Info},
		{"write not enough replicas", true, cerr(codes.Unavailable, client.ReasonNotEnoughReplicas, false), history.Fail},
		{"write invalid", true, cerr(codes.InvalidArgument, client.ReasonInvalidArgument, false), history.Fail},
		{"write never sent", true, cerr(codes.Unavailable, "", false), history.Fail},
		{"write, not a client error", true, errors.New("boom"), history.Info},
		{"write, context", true, context.DeadlineExceeded, history.Info},
		{"read not enough replicas", false, cerr(codes.Unavailable, client.ReasonNotEnoughReplicas, false), history.Fail},
		{"read timeout", false, cerr(codes.DeadlineExceeded, "", false), history.Info},
		{"read quorum not reached", false, cerr(codes.Unavailable, client.ReasonQuorumNotReached, false), history.Info},
		{"read invalid", false, cerr(codes.InvalidArgument, "", false), history.Fail},
	}
	for _, tc := range tests {
		if got := completionType(tc.write, tc.err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	if v, raw := decodeValue([]byte("42")); v == nil || *v != 42 || raw != "" {
		t.Error("42")
	}
	for _, b := range []string{"", "x", "-3", "0", "4 2"} {
		if v, raw := decodeValue([]byte(b)); v != nil || raw == "" {
			t.Errorf("%q decoded as %v %q", b, v, raw)
		}
	}
}

func TestConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(c *Config){
		func(c *Config) { c.Workload = "bank" },
		func(c *Config) { c.Consistency = []string{"strong"} },
		func(c *Config) { c.Nemesis = "meteor" },
		func(c *Config) { c.RF = 6 },
		func(c *Config) { c.Rate = 0 },
		func(c *Config) { c.Clients = "some" },
		func(c *Config) { c.ReadRatio = 2 },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if c.Validate() == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
	cfg.Nemesis, cfg.Seed, cfg.NodeArgs = "partition:ring,kill", 9, []string{"--log-level=debug"}
	cmd := cfg.Command()
	for _, want := range []string{"--nemesis partition:ring,kill", "--seed 9", "--node-arg --log-level=debug", "--workload register"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command %q lacks %q", cmd, want)
		}
	}
}

// TestCasRegisterRetiresKeysWithUnknownOutcomes: a key whose writes and
// cas end unknown maxUnknownPerKey times gets no more operations, so that
// Porcupine's check of it stays small.
func TestCasRegisterRetiresKeysWithUnknownOutcomes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Workload, cfg.Keys, cfg.OpsPerKey = WorkloadCasRegister, 1, 1000
	g := newGenerator(&cfg).(*registerGen)
	first := g.next(0).key
	for range maxUnknownPerKey {
		g.unknownOutcome(first)
	}
	if k := g.next(0).key; k == first {
		t.Fatalf("key %s still used after %d unknown outcomes", k, maxUnknownPerKey)
	}
}
