package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var five = []string{"n1", "n2", "n3", "n4", "n5"}

func TestParseSpecs(t *testing.T) {
	good := map[string]string{
		"":                          "none",
		"none":                      "none",
		"kill":                      "kill",
		"partition,kill":            "partition,kill",
		"partition:ring, clock:n2":  "partition:ring,clock:n2",
		"kill:n1+n3,pause:majority": "kill:n1+n3,pause:majority",
		"drop-writes:all":           "drop-writes:all",
	}
	for in, want := range good {
		specs, err := ParseSpecs(in)
		if err != nil {
			t.Errorf("ParseSpecs(%q): %v", in, err)
			continue
		}
		if got := FormatSpecs(specs); got != want {
			t.Errorf("ParseSpecs(%q) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"explode", "kill,kill", "partition:square", "kill:lots"} {
		if _, err := ParseSpecs(bad); err == nil {
			t.Errorf("ParseSpecs(%q) accepted", bad)
		}
	}
}

func TestScheduleIsDeterministicAndBounded(t *testing.T) {
	specs, _ := ParseSpecs("partition,kill,clock,slow,pause")
	cfg := ScheduleConfig{Specs: specs, Nodes: five, Duration: 60 * time.Second, On: 10 * time.Second, Off: 5 * time.Second, Seed: 7}
	a, err := Schedule(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Schedule(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different schedules")
	}
	cfg.Seed = 8
	c, _ := Schedule(cfg)
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds, same schedule")
	}
	if len(a) != 4 {
		t.Fatalf("%d windows, want 4 (0-10, 15-25, 30-40, 45-55)", len(a))
	}
	for i, w := range a {
		if w.Start != time.Duration(i)*15*time.Second || w.End != w.Start+10*time.Second {
			t.Errorf("window %d: %v-%v", i, w.Start, w.End)
		}
		if len(w.Faults) == 0 {
			t.Errorf("window %d has no fault", i)
		}
		for j := 1; j < len(w.Faults); j++ {
			if slices.Index(Kinds, w.Faults[j-1].Kind) > slices.Index(Kinds, w.Faults[j].Kind) {
				t.Errorf("window %d: faults out of order: %v", i, w.Faults)
			}
		}
		for _, f := range w.Faults {
			switch f.Kind {
			case Clock:
				d, err := time.ParseDuration(f.Offset)
				if err != nil || d == 0 || d.Abs() > 10*time.Second {
					t.Errorf("clock offset %q", f.Offset)
				}
			case Slow:
				if d, err := time.ParseDuration(f.Delay); err != nil || d <= 0 || d > 500*time.Millisecond {
					t.Errorf("slow delay %q", f.Delay)
				}
			case Partition:
				if len(f.Grudge) == 0 {
					t.Errorf("partition %s without a grudge", f.Shape)
				}
			default:
				if len(f.Targets) == 0 || len(f.Targets) > 2 {
					t.Errorf("%s targets %v: want one or a minority", f.Kind, f.Targets)
				}
			}
		}
	}
}

func TestScheduleModesAndTargets(t *testing.T) {
	specs, _ := ParseSpecs("partition:one,kill:majority")
	all, _ := Schedule(ScheduleConfig{Specs: specs, Nodes: five, Duration: 20 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeAll})
	for _, w := range all {
		if len(w.Faults) != 2 {
			t.Fatalf("mode all: window with %d faults", len(w.Faults))
		}
		if w.Faults[0].Shape != "one" || len(w.Faults[1].Targets) != 3 {
			t.Errorf("targets not honoured: %+v", w.Faults)
		}
	}
	cyc, _ := Schedule(ScheduleConfig{Specs: specs, Nodes: five, Duration: 20 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeCycle})
	if len(cyc) != 2 || cyc[0].Faults[0].Kind != Partition || cyc[1].Faults[0].Kind != Kill {
		t.Errorf("cycle: %+v", cyc)
	}
	explicit, _ := ParseSpecs("clock:n2+n4")
	ex, _ := Schedule(ScheduleConfig{Specs: explicit, Nodes: five, Duration: 5 * time.Second, On: 5 * time.Second})
	if !reflect.DeepEqual(ex[0].Faults[0].Targets, []string{"n2", "n4"}) {
		t.Errorf("explicit targets: %v", ex[0].Faults[0].Targets)
	}
	bad, _ := ParseSpecs("kill:n9")
	if _, err := Schedule(ScheduleConfig{Specs: bad, Nodes: five, Duration: 5 * time.Second, On: time.Second}); err == nil {
		t.Error("unknown node accepted")
	}
	short, _ := Schedule(ScheduleConfig{Specs: specs, Nodes: five, Duration: 12 * time.Second, On: 8 * time.Second, Off: 3 * time.Second})
	if len(short) != 1 {
		t.Errorf("a sliver window was scheduled: %+v", short)
	}
}

// sees returns who node x can talk to under grudge g (itself included).
func sees(g map[string][]string, nodes []string, x string) []string {
	var out []string
	for _, y := range nodes {
		if !slices.Contains(g[x], y) {
			out = append(out, y)
		}
	}
	return out
}

func symmetric(t *testing.T, g map[string][]string) {
	t.Helper()
	for a, bs := range g {
		for _, b := range bs {
			if !slices.Contains(g[b], a) {
				t.Errorf("grudge not symmetric: %s drops %s but not the reverse", a, b)
			}
		}
	}
}

func TestGrudgeShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		g := Grudge(rng, "halves", five)
		symmetric(t, g)
		sizes := map[int]int{}
		for _, n := range five {
			sizes[len(sees(g, five, n))]++
		}
		if sizes[2] != 2 || sizes[3] != 3 {
			t.Errorf("halves: %v", g)
		}

		g = Grudge(rng, "one", five)
		symmetric(t, g)
		isolated := 0
		for _, n := range five {
			if len(sees(g, five, n)) == 1 {
				isolated++
			}
		}
		if isolated != 1 {
			t.Errorf("one: %v", g)
		}

		g = Grudge(rng, "ring", five)
		symmetric(t, g)
		views := map[string]bool{}
		for _, n := range five {
			s := sees(g, five, n)
			if len(s) != 3 {
				t.Errorf("ring: %s sees %v, want a bare majority", n, s)
			}
			key := slices.Clone(s)
			slices.Sort(key)
			views[slices.Concat(key, nil)[0]+key[1]+key[2]] = true
		}
		if len(views) != 5 {
			t.Errorf("ring: two nodes see the same majority: %v", g)
		}

		g = Grudge(rng, "bridge", five)
		symmetric(t, g)
		bridges := 0
		for _, n := range five {
			if len(sees(g, five, n)) == 5 {
				bridges++
			} else if len(sees(g, five, n)) != 3 {
				t.Errorf("bridge: %s sees %v", n, sees(g, five, n))
			}
		}
		if bridges != 1 {
			t.Errorf("bridge: %d nodes see everyone: %v", bridges, g)
		}
	}
}

// TestParseMembership: membership defaults to add; decommission and
// replace are named but refused as not supported yet (ErrUnsupported), with
// a message that says what to use instead; unknown actions are refused.
func TestParseMembership(t *testing.T) {
	for _, tt := range []struct {
		in, want    string
		unsupported bool
	}{
		{in: "membership", want: "membership:add"},
		{in: "membership:add,kill:one,partition:halves", want: "membership:add,kill:one,partition:halves"},
		{in: "membership:decommission", unsupported: true},
		{in: "kill,membership:replace", unsupported: true},
		{in: "membership:grow"},
		{in: "membership,membership:add"},
	} {
		specs, err := ParseSpecs(tt.in)
		switch {
		case tt.want != "":
			if err != nil || FormatSpecs(specs) != tt.want {
				t.Errorf("ParseSpecs(%q) = %s, %v; want %s", tt.in, FormatSpecs(specs), err, tt.want)
			}
		case tt.unsupported:
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "membership:add") {
				t.Errorf("ParseSpecs(%q): %v; want ErrUnsupported naming membership:add", tt.in, err)
			}
		default:
			if err == nil || errors.Is(err, ErrUnsupported) {
				t.Errorf("ParseSpecs(%q): %v; want a plain refusal", tt.in, err)
			}
		}
	}
}

// TestScheduleMembershipGrowsTheNodes: each membership:add window names the
// next node, and later windows draw their kill targets and partition sides
// from the grown set, up to MaxNodes.
func TestScheduleMembershipGrowsTheNodes(t *testing.T) {
	specs, _ := ParseSpecs("membership:add,kill:all,partition:halves")
	three := []string{"n1", "n2", "n3"}
	w, err := Schedule(ScheduleConfig{Specs: specs, Nodes: three, Duration: 90 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeCycle, Seed: 3, MaxNodes: 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, win := range w {
		for _, f := range win.Faults {
			switch f.Kind {
			case Membership:
				if f.Shape != MembershipAdd {
					t.Fatalf("membership fault %+v", f)
				}
				got = append(got, "add "+strings.Join(f.Targets, "+"))
			case Kill:
				got = append(got, "kill "+strings.Join(f.Targets, "+"))
			case Partition:
				got = append(got, fmt.Sprintf("partition %d", len(f.Grudge)))
			}
		}
	}
	want := []string{"add n4", "kill n1+n2+n3+n4", "partition 4", "add n5", "kill n1+n2+n3+n4+n5", "partition 5", "kill n1+n2+n3+n4+n5", "partition 5"}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule %v\nwant %v", got, want)
	}
}
