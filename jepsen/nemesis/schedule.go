package nemesis

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// Fault kinds.
const (
	Kill       = "kill"
	Pause      = "pause"
	Partition  = "partition"
	Clock      = "clock"
	Slow       = "slow"
	DropWrites = "drop-writes"
	// Membership changes the cluster's shape: see MembershipActions.
	Membership = "membership"
)

// Membership actions, the target of a membership fault
// (membership:add). Add is the default.
const (
	// MembershipAdd starts a new node, on the next loopback address, that
	// joins the running cluster; the window's end waits until the ring
	// (the metadata log) has made it normal.
	MembershipAdd = "add"
	// MembershipDecommission decommissions a live node (`adaptkv node
	// decommission ID`): it streams its ranges to their new owners and
	// leaves; the window's end waits until the ring says it left and its
	// process has exited.
	MembershipDecommission = "decommission"
	// MembershipReplace SIGKILLs a node and starts a new one, on the next
	// loopback address, in its place (`adaptkv node --replace DEAD_ID`);
	// the window's end waits until the ring has made the new node normal
	// and the dead one left.
	MembershipReplace = "replace"
)

// MembershipActions lists the membership actions.
var MembershipActions = []string{MembershipAdd, MembershipDecommission, MembershipReplace}

// Kinds lists the fault kinds in the order a window applies them: network
// and hook faults first, process faults last (a hook cannot reach a paused
// or killed node).
//
// A membership change comes right after the partition, so that the
// window's other faults strike while the new node streams.
var Kinds = []string{Partition, Membership, Clock, Slow, DropWrites, Pause, Kill}

// Partition shapes.
var Shapes = []string{"halves", "ring", "one", "bridge"}

// Target choices for node faults.
var Targets = []string{"one", "minority", "majority", "all"}

// Spec is one fault of --nemesis: a kind and an optional target choice,
// partition shape or explicit node list.
type Spec struct {
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
}

// String returns kind[:target].
func (s Spec) String() string {
	if s.Target == "" {
		return s.Kind
	}
	return s.Kind + ":" + s.Target
}

// ParseSpecs parses a comma-separated fault list such as
// "partition:ring,kill". "none" or "" is no fault.
func ParseSpecs(s string) ([]Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []Spec
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		kind, target, _ := strings.Cut(part, ":")
		if !slices.Contains(Kinds, kind) {
			return nil, fmt.Errorf("nemesis: unknown fault %q (want %s)", kind, strings.Join(Kinds, ", "))
		}
		if kind == Membership {
			// Several membership actions may be given; a window makes one
			// change (the cluster takes one topology change at a time).
			if target == "" {
				target = MembershipAdd
			}
			if !slices.Contains(MembershipActions, target) {
				return nil, fmt.Errorf("nemesis: membership action %q (want %s)", target, strings.Join(MembershipActions, ", "))
			}
			if seen[kind+":"+target] {
				return nil, fmt.Errorf("nemesis: fault \"membership:%s\" given twice", target)
			}
			seen[kind+":"+target] = true
		} else if seen[kind] {
			return nil, fmt.Errorf("nemesis: fault %q given twice", kind)
		}
		seen[kind] = true
		if kind != Membership && target != "" {
			if kind == Partition {
				if !slices.Contains(Shapes, target) {
					return nil, fmt.Errorf("nemesis: partition shape %q (want %s)", target, strings.Join(Shapes, ", "))
				}
			} else if !slices.Contains(Targets, target) && !strings.HasPrefix(target, "n") {
				return nil, fmt.Errorf("nemesis: %s target %q (want %s, or node IDs joined with +)", kind, target, strings.Join(Targets, ", "))
			}
		}
		out = append(out, Spec{Kind: kind, Target: target})
	}
	return out, nil
}

// FormatSpecs is the inverse of ParseSpecs.
func FormatSpecs(specs []Spec) string {
	if len(specs) == 0 {
		return "none"
	}
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// Modes say which faults a window starts when several are given.
const (
	// ModeRandom starts each fault with probability 1/2, at least one.
	ModeRandom = "random"
	// ModeAll starts every fault in every window.
	ModeAll = "all"
	// ModeCycle starts one fault per window, in turn.
	ModeCycle = "cycle"
)

// Window is a span during which faults are active.
type Window struct {
	// Start and End are offsets from the start of the fault phase.
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	// Faults are what the window applies, targets resolved.
	Faults []history.Fault `json:"faults"`
}

// ScheduleConfig configures Schedule.
type ScheduleConfig struct {
	Specs []Spec
	// Nodes are the node IDs.
	Nodes []string
	// Duration is the length of the fault phase; windows end by then.
	Duration time.Duration
	// On and Off are the lengths of a fault window and of the quiet gap
	// after it.
	On, Off time.Duration
	// Mode is ModeRandom (default), ModeAll or ModeCycle.
	Mode string
	// Seed makes the schedule reproducible.
	Seed uint64
	// ClockMax bounds the clock skew; default 10 s.
	ClockMax time.Duration
	// SlowMax bounds the reply delay; default 500 ms.
	SlowMax time.Duration
	// MaxNodes bounds the nodes membership:add windows grow the cluster
	// to; default len(Nodes)+3. An add window past it changes nothing.
	MaxNodes int
	// MinNodes is the fewest members a membership:decommission window
	// leaves: at least 3, and at least the keyspace's replication factor
	// (the cluster refuses to go below it); default 3. A decommission
	// window at it changes nothing.
	MinNodes int
	// MaxLayout bounds the nodes ever laid out (the initial ones, the added
	// ones and the replacements, each on an address of its own); default
	// len(Nodes)+8. An add or replace window past it changes nothing.
	MaxLayout int
}

// Schedule returns the fault windows: on for On, off for Off, repeated
// while a window fits in Duration (the last window is cut short at
// Duration). It depends only on its configuration.
func Schedule(cfg ScheduleConfig) ([]Window, error) {
	if len(cfg.Specs) == 0 {
		return nil, nil
	}
	if cfg.On <= 0 || cfg.Off < 0 {
		return nil, fmt.Errorf("nemesis: fault window on %v off %v: on must be positive, off not negative", cfg.On, cfg.Off)
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("nemesis: no nodes")
	}
	if cfg.ClockMax <= 0 {
		cfg.ClockMax = 10 * time.Second
	}
	if cfg.SlowMax <= 0 {
		cfg.SlowMax = 500 * time.Millisecond
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeRandom
	case ModeRandom, ModeAll, ModeCycle:
	default:
		return nil, fmt.Errorf("nemesis: mode %q (want random, all or cycle)", cfg.Mode)
	}
	if cfg.MaxNodes <= 0 {
		cfg.MaxNodes = len(cfg.Nodes) + 3
	}
	cfg.MinNodes = max(cfg.MinNodes, 3)
	if cfg.MaxLayout <= 0 {
		cfg.MaxLayout = len(cfg.Nodes) + 8
	}
	// Nodes that a spec names explicitly (kill:n2+n3) stay members, so
	// that every window can strike them: a decommission or replace picks
	// among the others.
	named := map[string]bool{}
	for _, s := range cfg.Specs {
		if s.Kind == Membership {
			continue
		}
		if s.Kind != Partition && s.Target != "" && !slices.Contains(Targets, s.Target) {
			for _, id := range strings.Split(s.Target, "+") {
				if !slices.Contains(cfg.Nodes, id) {
					return nil, fmt.Errorf("nemesis: %s targets unknown node %q", s.Kind, id)
				}
				named[id] = true
			}
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6e656d65736973))
	specs := append([]Spec(nil), cfg.Specs...)
	sort.SliceStable(specs, func(i, j int) bool {
		return slices.Index(Kinds, specs[i].Kind) < slices.Index(Kinds, specs[j].Kind)
	})
	// The node set changes with each membership window: an add appends
	// the next node, a decommission drops its node, a replace swaps the
	// dead node for the next one. New nodes are named as the cluster names
	// them (n<k+1> after k laid out, removed ones included). Later
	// windows' targets, partitions and grudges are drawn from the set.
	nodes := slices.Clone(cfg.Nodes)
	laid := len(cfg.Nodes)
	var out []Window
	for i, t := 0, time.Duration(0); t < cfg.Duration; i, t = i+1, t+cfg.On+cfg.Off {
		w := Window{Start: t, End: min(t+cfg.On, cfg.Duration)}
		if w.End-w.Start < cfg.On/4 && i > 0 {
			break // a sliver of a window tests nothing
		}
		var chosen []Spec
		switch cfg.Mode {
		case ModeAll:
			chosen = specs
		case ModeCycle:
			chosen = []Spec{cfg.Specs[i%len(cfg.Specs)]}
		default:
			for _, s := range specs {
				if rng.IntN(2) == 0 {
					chosen = append(chosen, s)
				}
			}
			if len(chosen) == 0 {
				chosen = []Spec{specs[rng.IntN(len(specs))]}
			}
		}
		// The window's other faults strike the nodes the membership change
		// leaves alone: the leaving node must stay up to stream, the dead
		// one is already down, and the new one is not yet a member.
		next := nodes
		spare := nodes
		// One membership change per window: of the actions chosen, the
		// window's turn in rotation, or the next that can be made.
		var actions []Spec
		for _, s := range chosen {
			if s.Kind == Membership {
				actions = append(actions, s)
			}
		}
		membershipDone := false
		for _, s := range chosen {
			if s.Kind == Membership {
				if membershipDone {
					continue
				}
				membershipDone = true
				for k := range actions {
					f, after, ok := resolveMembership(rng, actions[(i+k)%len(actions)], nodes, laid, named, cfg)
					if !ok {
						continue
					}
					w.Faults = append(w.Faults, f)
					next = after
					spare = slices.DeleteFunc(slices.Clone(nodes), func(id string) bool { return slices.Contains(f.Targets, id) })
					if f.Shape != MembershipDecommission {
						laid++
					}
					break
				}
				continue
			}
			if s.Kind == Partition {
				w.Faults = append(w.Faults, resolve(rng, s, nodes, cfg))
				continue
			}
			w.Faults = append(w.Faults, resolve(rng, s, spare, cfg))
		}
		nodes = next
		out = append(out, w)
	}
	return out, nil
}

// resolveMembership resolves a membership fault against the window's
// nodes (laid nodes laid out so far): for add, the next node's ID; for
// decommission, a node drawn among those no spec names; for replace, such
// a node (the dead one) and the next node's ID. It returns the node set
// after the change, and false when the change would take the cluster past
// MaxNodes, below MinNodes or past MaxLayout, or no node may be chosen.
func resolveMembership(rng *rand.Rand, s Spec, nodes []string, laid int, named map[string]bool, cfg ScheduleConfig) (history.Fault, []string, bool) {
	f := history.Fault{Kind: Membership, Shape: s.Target}
	if f.Shape == "" {
		f.Shape = MembershipAdd
	}
	nextID := fmt.Sprintf("n%d", laid+1)
	var free []string
	for _, id := range nodes {
		if !named[id] {
			free = append(free, id)
		}
	}
	switch f.Shape {
	case MembershipAdd:
		if len(nodes) >= cfg.MaxNodes || laid >= cfg.MaxLayout {
			return f, nodes, false
		}
		f.Targets = []string{nextID}
		return f, append(slices.Clone(nodes), nextID), true
	case MembershipDecommission:
		if len(nodes)-1 < cfg.MinNodes || len(free) == 0 {
			return f, nodes, false
		}
		id := free[rng.IntN(len(free))]
		f.Targets = []string{id}
		return f, slices.DeleteFunc(slices.Clone(nodes), func(x string) bool { return x == id }), true
	case MembershipReplace:
		// The dead node's replicas must keep a quorum while it is down:
		// replace needs as many members as a decommission leaves.
		if len(nodes) < cfg.MinNodes || len(free) == 0 || laid >= cfg.MaxLayout {
			return f, nodes, false
		}
		dead := free[rng.IntN(len(free))]
		f.Targets = []string{dead, nextID}
		after := slices.DeleteFunc(slices.Clone(nodes), func(x string) bool { return x == dead })
		return f, append(after, nextID), true
	}
	return f, nodes, false
}

// resolve draws a fault's targets, shape and parameters among nodes.
func resolve(rng *rand.Rand, s Spec, nodes []string, cfg ScheduleConfig) history.Fault {
	f := history.Fault{Kind: s.Kind}
	if s.Kind == Partition {
		shape := s.Target
		if shape == "" {
			shape = Shapes[rng.IntN(len(Shapes))]
		}
		f.Shape = shape
		f.Grudge = Grudge(rng, shape, nodes)
		return f
	}
	choice := s.Target
	if choice == "" {
		switch s.Kind {
		case DropWrites:
			choice = "all"
		case Slow, Clock:
			choice = []string{"one", "minority"}[rng.IntN(2)]
		default:
			choice = []string{"one", "minority"}[rng.IntN(2)]
		}
	}
	f.Shape = choice
	f.Targets = pick(rng, choice, nodes)
	switch s.Kind {
	case Clock:
		// A magnitude spread over powers of two from 64 ms to ClockMax,
		// either direction, as Jepsen's clock bumps are.
		lo, hi := math.Log2(64), math.Log2(float64(cfg.ClockMax.Milliseconds()))
		msec := math.Exp2(lo + rng.Float64()*max(0, hi-lo))
		d := time.Duration(msec) * time.Millisecond
		if rng.IntN(2) == 0 {
			d = -d
		}
		f.Offset = d.String()
	case Slow:
		steps := []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second}
		var ok []time.Duration
		for _, d := range steps {
			if d <= cfg.SlowMax {
				ok = append(ok, d)
			}
		}
		if len(ok) == 0 {
			ok = []time.Duration{cfg.SlowMax}
		}
		f.Delay = ok[rng.IntN(len(ok))].String()
	}
	return f
}

// pick resolves a target choice to node IDs.
func pick(rng *rand.Rand, choice string, nodes []string) []string {
	shuffled := append([]string(nil), nodes...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	n := len(nodes)
	var k int
	switch choice {
	case "one":
		k = 1
	case "minority":
		k = max(1, (n-1)/2)
	case "majority":
		k = n/2 + 1
	case "all":
		k = n
	default:
		return strings.Split(choice, "+")
	}
	out := shuffled[:k]
	sort.Strings(out)
	return out
}

// Grudge builds a symmetric partition of the given shape over nodes, drawn
// with rng: for every node, the nodes it cannot talk to.
func Grudge(rng *rand.Rand, shape string, nodes []string) map[string][]string {
	s := append([]string(nil), nodes...)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	n := len(s)
	var sides [][]string
	switch shape {
	case "one":
		sides = [][]string{s[:1], s[1:]}
	case "bridge":
		// Two halves, and s[n/2] in the middle talking to both.
		if n < 3 {
			sides = [][]string{s[:1], s[1:]}
			break
		}
		a, b := s[:n/2], s[n/2+1:]
		g := map[string][]string{}
		for _, x := range a {
			for _, y := range b {
				g[x] = append(g[x], y)
				g[y] = append(g[y], x)
			}
		}
		return sortGrudge(g)
	case "ring":
		// Nodes on a ring each talk to their d nearest neighbours either
		// side, so each sees 2d+1 >= a majority and no two see the same set.
		m := n/2 + 1
		d := (m) / 2
		g := map[string][]string{}
		for i := range n {
			for j := range n {
				if i == j {
					continue
				}
				dist := min((i-j+n)%n, (j-i+n)%n)
				if dist > d {
					g[s[i]] = append(g[s[i]], s[j])
				}
			}
		}
		return sortGrudge(g)
	default: // halves
		sides = [][]string{s[:n/2], s[n/2:]}
	}
	g := map[string][]string{}
	for i, side := range sides {
		for j, other := range sides {
			if i == j {
				continue
			}
			for _, x := range side {
				g[x] = append(g[x], other...)
			}
		}
	}
	return sortGrudge(g)
}

func sortGrudge(g map[string][]string) map[string][]string {
	for k := range g {
		sort.Strings(g[k])
	}
	return g
}
