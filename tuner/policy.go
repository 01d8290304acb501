package tuner

import (
	"fmt"
	"slices"
	"strings"

	"github.com/adaptkv/adaptkv/api"
)

// ReadPath is how a coordinator routes a read among a key's N replicas.
type ReadPath int

const (
	// ReadAll asks every replica and answers with the first R replies: what
	// PBS models, the fastest R replicas answering, whichever they are, at
	// the price of N messages (the coordinator's KeyspaceConfig.ReadAll).
	ReadAll ReadPath = iota
	// ReadNearest asks only the R replicas with the lowest observed read
	// latency (ranked as the C3 paper and Cassandra's dynamic snitch do) and
	// waits for all of them: R messages, and a slow replica is avoided as
	// long as it is not among the R nearest.
	ReadNearest
	// ReadHedged is ReadNearest plus one hedged request (Dean and Barroso,
	// "The Tail at Scale", CACM 2013): if R replies have not arrived after
	// the decision's HedgeAfter, the coordinator also asks the next replica
	// in latency order and answers with the first R replies.
	ReadHedged
)

var readPathNames = [...]string{ReadAll: "all", ReadNearest: "nearest", ReadHedged: "hedged"}

// String returns the path's name as the CLI and JSON spell it.
func (p ReadPath) String() string {
	if p >= 0 && int(p) < len(readPathNames) {
		return readPathNames[p]
	}
	return fmt.Sprintf("readpath(%d)", int(p))
}

// ParseReadPath parses "all", "nearest" or "hedged".
func ParseReadPath(s string) (ReadPath, error) {
	for i, n := range readPathNames {
		if strings.EqualFold(s, n) {
			return ReadPath(i), nil
		}
	}
	return 0, fmt.Errorf("tuner: unknown read path %q (want all, nearest or hedged)", s)
}

// MarshalText encodes the path by name.
func (p ReadPath) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(readPathNames) {
		return nil, fmt.Errorf("tuner: invalid read path %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText decodes a path name.
func (p *ReadPath) UnmarshalText(b []byte) error {
	v, err := ParseReadPath(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Policy is one configuration of a keyspace the tuner can choose: how many
// replicas hold a key (N), how many answer a read (R) and acknowledge a write
// (W), and how reads are routed. Writes always go to all N replicas and wait
// for W acknowledgements, so W is the whole of the write path.
//
// It mirrors replication/quorum.Policy (which the tuner does not import: the
// node translates one into the other, with Level Custom unless R and W match
// a named level).
type Policy struct {
	N    int      `json:"n"`    // replicas per key
	R    int      `json:"r"`    // replies a read waits for
	W    int      `json:"w"`    // acknowledgements a write waits for
	Read ReadPath `json:"read"` // how reads are routed
}

// Overlapping reports whether every read quorum meets every write quorum
// (R + W > N), so that a read sees the latest write that completed before it
// began, whatever the latencies.
func (p Policy) Overlapping() bool { return p.R+p.W > p.N }

// Valid reports whether 1 ≤ R, W ≤ N and the read path is known.
func (p Policy) Valid() bool {
	return p.N >= 1 && p.R >= 1 && p.R <= p.N && p.W >= 1 && p.W <= p.N &&
		p.Read >= ReadAll && p.Read <= ReadHedged
}

// Level names the quorum level the policy amounts to: "one" (R=W=1),
// "quorum" (R=W=⌊N/2⌋+1), "all" (R=W=N) or "custom".
func (p Policy) Level() string {
	switch {
	case p.R == 1 && p.W == 1:
		return api.LevelOne.String()
	case p.R == p.N/2+1 && p.W == p.N/2+1:
		return api.LevelQuorum.String()
	case p.R == p.N && p.W == p.N:
		return api.LevelAll.String()
	}
	return api.LevelCustom.String()
}

// String renders the policy as replication/quorum does, "quorum(N=3 R=2
// W=2)", adding the read path when it is not ReadAll: "custom(N=3 R=1 W=2
// nearest)".
func (p Policy) String() string {
	if p.Read == ReadAll {
		return fmt.Sprintf("%s(N=%d R=%d W=%d)", p.Level(), p.N, p.R, p.W)
	}
	return fmt.Sprintf("%s(N=%d R=%d W=%d %v)", p.Level(), p.N, p.R, p.W, p.Read)
}

// Step is one configuration change of a Plan, with what the caller must have
// done before committing it to the metadata log.
type Step struct {
	// Policy is the configuration this step puts in force.
	Policy Policy `json:"policy"`
	// RequiresStreaming: this step adds replicas (N grows). Before it is
	// committed, the caller must stream the keyspace's existing data to the
	// added replicas, and from the start of streaming until every live node
	// has applied this step, coordinators must also send writes to the added
	// replicas and acknowledge a write only once they have it (not counting
	// them towards W: a write reaching an added replica only as a hint could
	// be missed by this step's reads). Only then may the added replicas count
	// in a read quorum, which they do from this step on.
	RequiresStreaming bool `json:"requires_streaming,omitempty"`
	// RequiresAllApplied: every live node must have applied this step before
	// the next step is committed. Set on every step but the last, so at most
	// two adjacent steps are ever in use at once; the overlap arguments of
	// Plan hold between adjacent steps only.
	RequiresAllApplied bool `json:"requires_all_applied,omitempty"`
	// RequiresRepair: this step's read quorum does not necessarily meet
	// writes that were acknowledged under the earlier configurations (they
	// reached fewer replicas than this step assumes, or some of their
	// replicas leave the preference list). A repair pass of the keyspace
	// (anti-entropy, or draining hints and read repair at ALL) must complete
	// first: when the plan lowers R, W or N, run it after the previous step is
	// applied everywhere and before committing this one; when the step only
	// raises (a step back), commit at once, since it is already safer than
	// what it replaces, and run the repair right after — older writes are
	// covered once it ends.
	RequiresRepair bool `json:"requires_repair,omitempty"`
	// Note says, for a person, why the step is there.
	Note string `json:"note"`
}

// RepairFirst reports whether the repair pass s requires must complete
// before s is committed, prev being the step before it (or the policy in
// force): when s lowers R, W or N its reads may miss older writes as soon
// as any node applies it. A step that only raises is already safer than
// the one it replaces, so it is committed at once and the pass runs after
// it; false when s requires no repair.
func (s Step) RepairFirst(prev Policy) bool {
	return s.RequiresRepair && (s.Policy.R < prev.R || s.Policy.W < prev.W || s.Policy.N < prev.N)
}

// Plan returns the safe sequence of configuration changes from one policy to
// another (nil when they are equal), following DESIGN.md "Cluster metadata
// and configuration changes". Plan assumes every live node has applied from.
//
//   - N grows first, in a step of its own that streams and then counts the
//     new replicas. Its R and W are each the larger of from's and to's, so it
//     is also the joint step of any R or W that goes down afterwards; when
//     both ends overlap, W is raised further so that reads and writes under from
//     and under the grown step still meet (R_from + W_grown > N_to).
//   - N shrinks last. Before it, R and W are raised at the old N so that
//     reads and writes under that step and under the shrunk one meet
//     (R_to + W_pre > N_from and R_pre + W_to > N_from) when both ends
//     overlap; raising needs no joint step.
//   - Otherwise, a change that lowers R or W passes through the joint step
//     (N, max(R), max(W)) unless that joint is from itself, which every node
//     has already applied. A change that only raises R or W is one step.
//
// When from overlaps and to overlaps, every step overlaps too (R+W>N), and
// reads and writes under any two adjacent steps meet; tests check both
// exhaustively for N ≤ 7.
func Plan(from, to Policy) []Step { return PlanAfter(nil, from, to) }

// PlanAfter is Plan for a keyspace whose writes since its last complete
// repair pass may also have been acknowledged under the configurations in
// unrepaired (State.Unrepaired), not only under from. A step whose reads
// would miss such a write requires a repair pass, whatever from is: after
// R=3 W=1 → R=3 W=3, lowering R to 2 is safe for the writes made under W=3
// but not for those made under W=1, which may still sit on one replica.
func PlanAfter(unrepaired []Policy, from, to Policy) []Step {
	if from == to {
		return nil
	}
	// When both ends overlap, every step must too, and so must reads and
	// writes under adjacent steps. When either end is a partial quorum the
	// keyspace does not promise overlap across the change, and forcing it
	// would only add steps with needlessly large quorums.
	keep := from.Overlapping() && to.Overlapping()
	var seq []Policy
	switch {
	case to.N > from.N:
		g := Policy{N: to.N, R: max(from.R, to.R), W: max(from.W, to.W), Read: from.Read}
		if keep {
			g.W = max(g.W, to.N-from.R+1) // R_from + W_grown > N_to
		}
		g.W = min(g.W, to.N)
		seq = append(seq, g)
		if g != to {
			seq = append(seq, to)
		}
	case to.N < from.N:
		p := Policy{N: from.N, R: max(from.R, to.R), W: max(from.W, to.W), Read: from.Read}
		if keep {
			p.R = max(p.R, from.N-to.W+1) // R_pre + W_to > N_from
			p.W = max(p.W, from.N-to.R+1) // R_to + W_pre > N_from
		}
		p.R, p.W = min(p.R, from.N), min(p.W, from.N)
		if p != from {
			seq = append(seq, p)
		}
		seq = append(seq, to)
	default:
		j := Policy{N: from.N, R: max(from.R, to.R), W: max(from.W, to.W), Read: from.Read}
		lowers := j.R != to.R || j.W != to.W // to is below the joint somewhere
		raises := j.R != from.R || j.W != from.W
		if lowers && raises {
			seq = append(seq, j)
		}
		seq = append(seq, to)
	}
	return annotate(unrepaired, from, seq)
}

// annotate turns a sequence of policies into Steps, setting the caller's
// obligations and a note for each.
func annotate(before []Policy, from Policy, seq []Policy) []Step {
	steps := make([]Step, len(seq))
	// Writes acknowledged under these configurations may not have reached
	// more replicas than their W; a repair pass resets the list.
	unrepaired := append(slices.Clone(before), from)
	prev := from
	for i, p := range seq {
		s := Step{Policy: p}
		s.RequiresAllApplied = i < len(seq)-1
		s.RequiresStreaming = p.N > prev.N
		if p.Overlapping() {
			for _, old := range unrepaired {
				if !covers(p, old) {
					s.RequiresRepair = true
					break
				}
			}
		}
		s.Note = stepNote(prev, p, s, i == len(seq)-1)
		steps[i] = s
		if s.RequiresRepair {
			unrepaired = unrepaired[:0]
		}
		unrepaired = append(unrepaired, p)
		prev = p
	}
	return steps
}

// Unrepaired returns the list of configurations whose writes may sit on
// fewer replicas than a later read assumes, after the configuration in
// force moved from `from` to p without a repair pass: list plus from, less
// the ones p dominates. A configuration with the same N as p and W ≥ p.W is
// dominated: any read that meets p's writes meets its writes too, and p
// itself is always checked by PlanAfter as the configuration in force.
func Unrepaired(list []Policy, from, p Policy) []Policy {
	var out []Policy
	for _, old := range append(slices.Clone(list), from) {
		old = Policy{N: old.N, W: old.W, R: old.R} // the read path does not matter here
		if old.N == p.N && old.W >= p.W {
			continue
		}
		if slices.ContainsFunc(out, func(o Policy) bool { return o.N == old.N && o.W == old.W }) {
			continue
		}
		out = append(out, old)
	}
	return out
}

// covers reports whether a read under p is sure to meet a write that was
// acknowledged by old.W of old's replicas. Preference lists are prefixes of
// one ring walk, so shrinking from old.N to p.N drops old.N−p.N replicas
// (which may all have held the write), and growing adds replicas that hold
// everything once streamed.
func covers(p, old Policy) bool {
	copies := old.W
	if p.N < old.N {
		copies -= old.N - p.N
	} else {
		copies += p.N - old.N
	}
	return p.R+copies > p.N
}

// stepNote explains a step to a person reading the plan.
func stepNote(prev, p Policy, s Step, last bool) string {
	var parts []string
	switch {
	case p.N > prev.N:
		parts = append(parts, fmt.Sprintf("grow N %d→%d: stream existing data to the new replicas, then count them", prev.N, p.N))
	case p.N < prev.N:
		parts = append(parts, fmt.Sprintf("shrink N %d→%d, last", prev.N, p.N))
	}
	if !last && (p.R > prev.R || p.W > prev.W || p.N != prev.N) {
		parts = append(parts, fmt.Sprintf("joint step: R=%d W=%d cover both the old and the new quorums", p.R, p.W))
	} else if p.R != prev.R || p.W != prev.W {
		parts = append(parts, fmt.Sprintf("R %d→%d, W %d→%d", prev.R, p.R, prev.W, p.W))
	}
	if p.Read != prev.Read {
		parts = append(parts, fmt.Sprintf("reads %v→%v", prev.Read, p.Read))
	}
	if s.RequiresAllApplied {
		parts = append(parts, "wait until every live node has applied it")
	}
	if s.RequiresRepair {
		parts = append(parts, "needs a repair pass: older writes may sit on too few replicas")
	}
	return strings.Join(parts, "; ")
}
