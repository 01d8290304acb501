package quorum

import (
	"errors"
	"fmt"

	"github.com/adaptkv/adaptkv/api"
)

// Level is a named consistency level, declared once in the API package so
// that the server and the SDK spell and number the levels alike.
type Level = api.Level

// The levels, as this package has always named them.
const (
	// Default means "use the keyspace's default level".
	Default = api.LevelDefault
	// One waits for one replica.
	One = api.LevelOne
	// Quorum waits for a majority, ⌊N/2⌋+1, on both paths, so R + W > N.
	Quorum = api.LevelQuorum
	// All waits for every replica.
	All = api.LevelAll
	// Custom takes R and W as given.
	Custom = api.LevelCustom
	// Linearizable runs writes through Paxos and reads through a majority
	// (replication/paxos); its Policy has R = W = ⌊N/2⌋+1.
	Linearizable = api.LevelLinearizable
)

// ParseLevel parses a level name: one, quorum, all, linearizable, or default and the empty
// string for Default, in any case. Custom quorums are given as R and W, not
// by name, so "custom" is refused here.
func ParseLevel(s string) (Level, error) {
	if l, ok := api.ParseLevel(s); ok && l != Custom {
		return l, nil
	}
	return Default, fmt.Errorf("%w: unknown consistency level %q (want one, quorum, all or linearizable)", ErrInvalidPolicy, s)
}

// ErrInvalidPolicy is returned for levels and quorums that cannot be served.
var ErrInvalidPolicy = errors.New("quorum: invalid policy")

// Policy is how many replicas hold a key (N), answer a read (R) and
// acknowledge a write (W).
type Policy struct {
	Level Level
	N     int
	R     int
	W     int
}

// Majority is ⌊n/2⌋+1.
func Majority(n int) int { return n/2 + 1 }

// Resolve turns a level (and, for Custom, explicit r and w) into a Policy for
// a keyspace of replication factor n. It rejects R or W outside [1, N].
func Resolve(level Level, n, r, w int) (Policy, error) {
	if n < 1 {
		return Policy{}, fmt.Errorf("%w: replication factor %d is below 1", ErrInvalidPolicy, n)
	}
	p := Policy{Level: level, N: n}
	switch level {
	case One:
		p.R, p.W = 1, 1
	case Quorum:
		p.R, p.W = Majority(n), Majority(n)
	case All:
		p.R, p.W = n, n
	case Custom:
		p.R, p.W = r, w
	case Linearizable:
		p.R, p.W = Majority(n), Majority(n)
	default:
		return Policy{}, fmt.Errorf("%w: level %v cannot be resolved without a keyspace default", ErrInvalidPolicy, level)
	}
	if p.R < 1 || p.R > n {
		return Policy{}, fmt.Errorf("%w: R=%d is outside 1..N with N=%d", ErrInvalidPolicy, p.R, n)
	}
	if p.W < 1 || p.W > n {
		return Policy{}, fmt.Errorf("%w: W=%d is outside 1..N with N=%d", ErrInvalidPolicy, p.W, n)
	}
	return p, nil
}

// Overlapping reports whether every read quorum meets every write quorum
// (R + W > N), so a read sees the latest write that completed before it began.
func (p Policy) Overlapping() bool { return p.R+p.W > p.N }

// String renders the policy as "quorum(N=3 R=2 W=2)".
func (p Policy) String() string {
	return fmt.Sprintf("%v(N=%d R=%d W=%d)", p.Level, p.N, p.R, p.W)
}

// Verdict is the state of a Tally.
type Verdict int

const (
	// Pending: the outcome is not decided yet.
	Pending Verdict = iota
	// Won: enough replicas succeeded.
	Won
	// Lost: so many replicas failed that the need can no longer be met.
	Lost
)

// String names the verdict.
func (v Verdict) String() string {
	switch v {
	case Pending:
		return "pending"
	case Won:
		return "won"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Tally counts replica answers for one operation that needs `need` successes
// out of `total` replicas asked. Each replica is counted once; a second answer
// from the same replica is ignored, so a retried or duplicated reply cannot
// make a quorum out of one replica. The zero value is not usable: use NewTally.
type Tally struct {
	need, total int
	acks, fails int
	seen        uint64 // bit i set once replica i answered; N is at most 64
}

// MaxReplicas is the largest replica count a Tally tracks.
const MaxReplicas = 64

// NewTally returns a Tally needing need of total replicas. need is clamped to
// at least 1, since an operation that needs nothing would be won before any
// replica is asked.
func NewTally(need, total int) Tally {
	if need < 1 {
		need = 1
	}
	return Tally{need: need, total: total}
}

// Record registers replica i's answer and returns the verdict after it.
func (t *Tally) Record(i int, ok bool) Verdict {
	if i >= 0 && i < MaxReplicas {
		bit := uint64(1) << uint(i)
		if t.seen&bit != 0 {
			return t.Verdict()
		}
		t.seen |= bit
	}
	if ok {
		t.acks++
	} else {
		t.fails++
	}
	return t.Verdict()
}

// Verdict returns the current verdict without recording anything.
func (t *Tally) Verdict() Verdict {
	switch {
	case t.acks >= t.need:
		return Won
	case t.total-t.fails < t.need:
		return Lost
	}
	return Pending
}

// Acks is the number of successes recorded.
func (t *Tally) Acks() int { return t.acks }

// Fails is the number of failures recorded.
func (t *Tally) Fails() int { return t.fails }

// Need is the number of successes required.
func (t *Tally) Need() int { return t.need }

// Answered is the number of replicas that answered either way.
func (t *Tally) Answered() int { return t.acks + t.fails }
