package tuner

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/api"
)

// ErrInvalidGoal is wrapped by every error Goal.Validate returns.
var ErrInvalidGoal = errors.New("tuner: invalid goal")

// Floor is the weakest consistency an adaptive keyspace may be given.
type Floor int

const (
	// FloorOne allows any R and W, including partial quorums (R+W ≤ N)
	// whose stale-read probability the model bounds.
	FloorOne Floor = iota
	// FloorQuorum allows only overlapping quorums (R+W > N): the tuner may
	// still trade R against W, route reads and change N, but a read always
	// meets the latest completed write.
	FloorQuorum
	// FloorSession allows what FloorOne allows: the keyspace's clients
	// read and write through SDK sessions, whose read-your-writes,
	// monotonic reads and writes-follow-reads hold at any R and W (a
	// session read skips replicas behind its token and fails rather than
	// answer older data), so a partial quorum costs those clients no
	// guarantee, only, at worst, a retried read. The stale-read bound still
	// governs what other sessions' writes a read may miss.
	FloorSession
)

// floorSessionName names FloorSession.
const floorSessionName = "session"

// String returns "one", "quorum" or "session".
func (f Floor) String() string {
	switch f {
	case FloorOne:
		return api.LevelOne.String()
	case FloorQuorum:
		return api.LevelQuorum.String()
	case FloorSession:
		return floorSessionName
	}
	return fmt.Sprintf("floor(%d)", int(f))
}

// MarshalText encodes the floor by name.
func (f Floor) MarshalText() ([]byte, error) {
	if f != FloorOne && f != FloorQuorum && f != FloorSession {
		return nil, fmt.Errorf("tuner: invalid floor %d", int(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText decodes "one", "quorum" or "session".
func (f *Floor) UnmarshalText(b []byte) error {
	if string(b) == floorSessionName {
		*f = FloorSession
		return nil
	}
	switch l, _ := api.ParseLevel(string(b)); l {
	case api.LevelOne:
		*f = FloorOne
	case api.LevelQuorum:
		*f = FloorQuorum
	default:
		return fmt.Errorf("%w: unknown floor %q (want one, quorum or session)", ErrInvalidGoal, b)
	}
	return nil
}

// Goal is what a keyspace asks of the tuner and the bounds it may move in.
// The stale-read bound and the floor are hard constraints; the latency
// targets are met when some candidate can, and otherwise the tuner picks the
// cheapest candidate that meets the stale-read bound and says so.
type Goal struct {
	// MaxStale bounds the predicted probability that a read returns a value
	// older than the latest write that completed before it, over the
	// keyspace's workload (e.g. 0.001). In [0, 1). 0 admits only
	// configurations the model proves never stale, in practice R+W > N.
	MaxStale float64 `json:"max_stale"`
	// Floor is the weakest level allowed.
	Floor Floor `json:"floor"`
	// MinRF and MaxRF bound the replication factor N; 1 ≤ MinRF ≤ MaxRF.
	MinRF int `json:"min_rf"`
	MaxRF int `json:"max_rf"`
	// MinW is the durability bound: a write is acknowledged only once this
	// many replicas hold it. 0 means 1.
	MinW int `json:"min_w,omitempty"`
	// ReadP99 and WriteP99 are optional latency targets (0: none).
	ReadP99  time.Duration `json:"read_p99_ns,omitempty"`
	WriteP99 time.Duration `json:"write_p99_ns,omitempty"`
}

// DefaultGoal is a stale-read bound of 0.1% with floor one and N = 3, the
// common Dynamo setting; W ≥ 2 so an acknowledged write survives one disk.
func DefaultGoal() Goal {
	return Goal{MaxStale: 0.001, Floor: FloorOne, MinRF: 3, MaxRF: 3, MinW: 2}
}

// minW is MinW with 0 read as 1.
func (g Goal) minW() int { return max(g.MinW, 1) }

// Validate reports every problem with the goal in one error that names each
// field and its bad value, wrapping ErrInvalidGoal.
func (g Goal) Validate() error {
	var probs []string
	if !(g.MaxStale >= 0 && g.MaxStale < 1) {
		probs = append(probs, fmt.Sprintf("max stale-read probability %v is outside [0, 1)", g.MaxStale))
	}
	if g.Floor != FloorOne && g.Floor != FloorQuorum && g.Floor != FloorSession {
		probs = append(probs, fmt.Sprintf("floor %d is not one, quorum or session", int(g.Floor)))
	}
	if g.MinRF < 1 {
		probs = append(probs, fmt.Sprintf("minimum replication factor %d is below 1", g.MinRF))
	}
	if g.MaxRF < g.MinRF {
		probs = append(probs, fmt.Sprintf("maximum replication factor %d is below the minimum %d", g.MaxRF, g.MinRF))
	}
	if g.MaxRF > MaxRF {
		probs = append(probs, fmt.Sprintf("maximum replication factor %d is above %d, the most the tuner models", g.MaxRF, MaxRF))
	}
	if g.MinW < 0 {
		probs = append(probs, fmt.Sprintf("minimum W %d is negative", g.MinW))
	}
	if g.MaxRF >= 1 && g.MinW > g.MaxRF {
		probs = append(probs, fmt.Sprintf("minimum W %d exceeds the maximum replication factor %d", g.MinW, g.MaxRF))
	}
	if g.ReadP99 < 0 {
		probs = append(probs, fmt.Sprintf("read p99 target %v is negative", g.ReadP99))
	}
	if g.WriteP99 < 0 {
		probs = append(probs, fmt.Sprintf("write p99 target %v is negative", g.WriteP99))
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidGoal, strings.Join(probs, "; "))
}

// MaxRF is the largest replication factor the tuner considers. The model's
// per-trial work is O(N²) on small on-stack arrays; 16 is far above any
// keyspace's useful N.
const MaxRF = 16

// Allows reports whether p is within the goal's bounds and floor (the
// stale-read bound and latency targets are checked against predictions, not
// here). clusterSize, when positive, caps N: a key cannot have more replicas
// than there are nodes.
func (g Goal) Allows(p Policy, clusterSize int) bool {
	if !p.Valid() || p.N < g.MinRF || p.N > g.MaxRF || p.W < g.minW() {
		return false
	}
	if clusterSize > 0 && p.N > clusterSize {
		return false
	}
	if g.Floor == FloorQuorum && !p.Overlapping() {
		return false
	}
	return true
}

// Candidates enumerates every policy the goal allows, in a fixed order: N,
// then R, then W ascending, then read path. Where R = N every path contacts
// all replicas, so only ReadAll is listed.
func Candidates(g Goal, clusterSize int) []Policy {
	var out []Policy
	for n := max(g.MinRF, 1); n <= min(g.MaxRF, MaxRF); n++ {
		for r := 1; r <= n; r++ {
			for w := 1; w <= n; w++ {
				paths := []ReadPath{ReadAll, ReadNearest, ReadHedged}
				if r == n {
					paths = paths[:1]
				}
				for _, rp := range paths {
					p := Policy{N: n, R: r, W: w, Read: rp}
					if g.Allows(p, clusterSize) {
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}
