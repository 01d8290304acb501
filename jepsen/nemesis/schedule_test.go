package nemesis

import (
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

// TestParseMembership: membership defaults to add; add, decommission and
// replace parse and combine with each other and the other faults; unknown
// actions and an action given twice are refused.
func TestParseMembership(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{in: "membership", want: "membership:add"},
		{in: "membership:add,kill:one,partition:halves", want: "membership:add,kill:one,partition:halves"},
		{in: "membership:decommission", want: "membership:decommission"},
		{in: "kill,membership:replace,partition:halves", want: "kill,membership:replace,partition:halves"},
		{in: "membership:grow"},
		{in: "membership,membership:add"},
		{in: "membership:add,membership:decommission,membership:replace,kill", want: "membership:add,membership:decommission,membership:replace,kill"},
		{in: "membership:replace,kill,membership:replace"},
	} {
		specs, err := ParseSpecs(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseSpecs(%q) accepted", tt.in)
			}
			continue
		}
		if err != nil || FormatSpecs(specs) != tt.want {
			t.Errorf("ParseSpecs(%q) = %s, %v; want %s", tt.in, FormatSpecs(specs), err, tt.want)
		}
	}
}

// membershipTrace runs a schedule and describes its membership, kill and
// partition faults in order; it also fails the test if a window's kill
// strikes a node its membership change names, or any fault strikes a node
// an earlier window took off.
func membershipTrace(t *testing.T, cfg ScheduleConfig) []string {
	t.Helper()
	w, err := Schedule(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{}
	var got []string
	for _, win := range w {
		var changed []string
		for _, f := range win.Faults {
			for _, id := range f.Targets {
				if gone[id] {
					t.Errorf("window at %v: %s strikes %s, which an earlier window took off", win.Start, f.Kind, id)
				}
			}
			for id := range f.Grudge {
				if gone[id] {
					t.Errorf("window at %v: partition includes %s, which an earlier window took off", win.Start, id)
				}
			}
			switch f.Kind {
			case Membership:
				changed = f.Targets
				got = append(got, f.Shape+" "+strings.Join(f.Targets, "+"))
			case Kill:
				for _, id := range f.Targets {
					if slices.Contains(changed, id) {
						t.Errorf("window at %v: kill strikes %s, which the window's membership change names", win.Start, id)
					}
				}
				got = append(got, "kill "+strings.Join(f.Targets, "+"))
			case Partition:
				got = append(got, fmt.Sprintf("partition %d", len(f.Grudge)))
			}
		}
		for _, f := range win.Faults {
			if f.Kind == Membership && f.Shape != MembershipAdd {
				gone[f.Targets[0]] = true
			}
		}
	}
	return got
}

// TestScheduleMembershipDecommission: each decommission window takes a
// node the specs do not name off the set, never below MinNodes; later
// windows draw their kills and partitions from the smaller set, and a
// window's kill spares the leaving node.
func TestScheduleMembershipDecommission(t *testing.T) {
	specs, _ := ParseSpecs("membership:decommission,kill:one")
	for seed := range uint64(20) {
		got := membershipTrace(t, ScheduleConfig{Specs: specs, Nodes: five, Duration: 60 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeAll, Seed: seed, MinNodes: 3})
		decommissions := 0
		for _, g := range got {
			if strings.HasPrefix(g, "decommission") {
				decommissions++
			}
		}
		if decommissions != 2 || len(got) != 6+2 {
			t.Fatalf("seed %d: %v; want two decommissions (5 to 3 nodes), then none, and a kill in each of 6 windows", seed, got)
		}
	}
	// A node a spec names is never taken off, and the cluster's N holds.
	named, _ := ParseSpecs("membership:decommission,kill:n1+n2")
	got := membershipTrace(t, ScheduleConfig{Specs: named, Nodes: five, Duration: 60 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeAll, Seed: 1, MinNodes: 4})
	if len(got) != 7 || !strings.HasPrefix(got[0], "decommission") || strings.Contains(got[0], "n1") || strings.Contains(got[0], "n2") {
		t.Fatalf("%v; want one decommission (MinNodes 4) of a node other than n1 and n2", got)
	}
}

// TestScheduleMembershipReplace: each replace window names a dead node
// and its replacement (the next ID, counting the nodes taken off), later
// windows strike the replacement and never the dead node, and the window's
// kill spares both.
func TestScheduleMembershipReplace(t *testing.T) {
	specs, _ := ParseSpecs("membership:replace,kill:one,partition:halves")
	got := membershipTrace(t, ScheduleConfig{Specs: specs, Nodes: five, Duration: 60 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeCycle, Seed: 4})
	want := []string{"n6", "n7"}
	var next []string
	for _, g := range got {
		if strings.HasPrefix(g, "replace") {
			parts := strings.Split(strings.TrimPrefix(g, "replace "), "+")
			if len(parts) != 2 {
				t.Fatalf("replace %q", g)
			}
			next = append(next, parts[1])
		}
	}
	if !slices.Equal(next, want) {
		t.Fatalf("%v: replacements %v, want %v", got, next, want)
	}
}

// TestScheduleMembershipMixed: with every action given, each window makes
// one change, in rotation (skipping one that cannot be made), and new IDs
// count every node laid out, the ones taken off included.
func TestScheduleMembershipMixed(t *testing.T) {
	specs, _ := ParseSpecs("membership:add,membership:decommission,membership:replace,kill:one")
	got := membershipTrace(t, ScheduleConfig{Specs: specs, Nodes: []string{"n1", "n2", "n3", "n4"}, Duration: 60 * time.Second, On: 5 * time.Second, Off: 5 * time.Second, Mode: ModeAll, Seed: 2})
	var shapes []string
	laid := 4
	for _, g := range got {
		shape, targets, _ := strings.Cut(g, " ")
		if shape == "kill" {
			continue
		}
		shapes = append(shapes, shape)
		ids := strings.Split(targets, "+")
		if shape != MembershipDecommission {
			laid++
			if ids[len(ids)-1] != fmt.Sprintf("n%d", laid) {
				t.Errorf("%s names %s, want n%d", shape, ids[len(ids)-1], laid)
			}
		}
	}
	want := []string{"add", "decommission", "replace", "add", "decommission", "replace"}
	if !slices.Equal(shapes, want) {
		t.Fatalf("membership changes %v (%v), want %v", shapes, got, want)
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
