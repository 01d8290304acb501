package paxos

import "fmt"

// Ballot numbers a Paxos round of one key. Ballots are totally ordered by
// Counter, then Node; each proposer draws them with its own Node, so no two
// proposers ever use the same ballot, and a round is identified by its
// ballot alone.
//
// Counter may be seeded from the proposer's hybrid logical clock (that makes
// a fresh ballot usually beat the ballots of rounds long finished, saving a
// refusal), but safety never depends on it: a proposer whose clock is hours
// behind is refused, learns the higher ballot from the refusal, and draws
// above it (NextBallot). Clocks only affect liveness.
type Ballot struct {
	Counter uint64
	Node    uint32
}

// Less reports whether b orders before o.
func (b Ballot) Less(o Ballot) bool {
	if b.Counter != o.Counter {
		return b.Counter < o.Counter
	}
	return b.Node < o.Node
}

// IsZero reports whether b is the zero ballot, which orders before every
// ballot a proposer draws and stands for "none".
func (b Ballot) IsZero() bool { return b == Ballot{} }

// String formats b as counter.node, the form the tests use.
func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Counter, b.Node) }

// maxBallot returns the greater of a and b.
func maxBallot(a, b Ballot) Ballot {
	if a.Less(b) {
		return b
	}
	return a
}

// NextBallot returns node's ballot for a new round: its counter is the
// greater of clock and one more than the counter of above, so the ballot is
// greater than above (the highest ballot the proposer has seen, from its
// previous round or a refusal) whatever the clock says. Node must not be 0:
// the zero ballot means none.
func NextBallot(node uint32, clock uint64, above Ballot) Ballot {
	return Ballot{Counter: max(clock, above.Counter+1), Node: node}
}
