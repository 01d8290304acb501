package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// opSpec is one operation a generator hands to a worker.
type opSpec struct {
	f     string
	key   string
	value *int64
	// from is a cas's expected value (0: the key must be absent).
	from  *int64
	level string
}

// generator produces a workload's operations. The sequence it returns for
// a given seed is fixed (for the session workload, per worker): which
// worker runs which operation, and when, depends on timing.
type generator interface {
	next(worker int) opSpec
	// keys returns every key handed out so far, sorted.
	keys() []string
}

// Key prefixes of the workloads.
const (
	registerPrefix = "r/"
	casPrefix      = "x/"
	setPrefix      = "s/"
	sessionPrefix  = "c/"
)

func newGenerator(cfg *Config) generator {
	switch cfg.Workload {
	case WorkloadSet:
		return &setGen{rng: rand.New(rand.NewPCG(cfg.Seed, 0x736574)), levels: cfg.Consistency, readRatio: cfg.ReadRatio}
	case WorkloadSession:
		g := &sessionGen{levels: cfg.Consistency, readRatio: cfg.ReadRatio, nkeys: cfg.SessionKeys, seen: map[string]bool{}}
		for w := range cfg.Concurrency {
			g.workers = append(g.workers, &sessionWorker{rng: rand.New(rand.NewPCG(cfg.Seed, 0x73657373+uint64(w)))})
		}
		return g
	case WorkloadCasRegister:
		g := &registerGen{rng: rand.New(rand.NewPCG(cfg.Seed, 0x636173)), levels: cfg.Consistency, readRatio: cfg.ReadRatio,
			perKey: cfg.OpsPerKey, used: map[string]bool{}, prefix: casPrefix, cas: true}
		for range cfg.Keys {
			g.slots = append(g.slots, g.freshKey())
		}
		return g
	default:
		g := &registerGen{prefix: registerPrefix, rng: rand.New(rand.NewPCG(cfg.Seed, 0x726567)), levels: cfg.Consistency, readRatio: cfg.ReadRatio,
			perKey: cfg.OpsPerKey, used: map[string]bool{}}
		for range cfg.Keys {
			g.slots = append(g.slots, g.freshKey())
		}
		return g
	}
}

func pickLevel(rng *rand.Rand, levels []string) string { return levels[rng.IntN(len(levels))] }

// registerGen: reads and writes over Keys keys at once; a key is retired
// after OpsPerKey operations and a fresh one takes its slot. Every write
// has a value never written before (a global counter).
//
// With cas (the cas-register workload) half the non-reads are
// compare-and-sets instead of writes, from one of the last two values
// handed out for the key (the last one three times in four, so that many
// apply and many do not), or from absent on a key not written yet.
type registerGen struct {
	prefix    string
	cas       bool
	mu        sync.Mutex
	rng       *rand.Rand
	levels    []string
	readRatio float64
	perKey    int
	slots     []*regSlot
	nextKey   int
	nextValue int64
	used      map[string]bool
}

type regSlot struct {
	key string
	n   int
	// unknown counts the key's writes and cas whose outcome is unknown.
	unknown int
	// last and prev are the last two values handed out for the key.
	last, prev int64
}

// casShare is the share of the cas-register workload's non-reads that are
// compare-and-sets.
const casShare = 0.5

func (g *registerGen) freshKey() *regSlot {
	g.nextKey++
	k := g.prefix + strconv.Itoa(g.nextKey)
	g.used[k] = true
	return &regSlot{key: k}
}

func (g *registerGen) next(int) opSpec {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := g.rng.IntN(len(g.slots))
	if g.slots[i].n >= g.perKey {
		g.slots[i] = g.freshKey()
	}
	if g.cas && g.slots[i].unknown >= maxUnknownPerKey {
		g.slots[i] = g.freshKey()
	}
	s := g.slots[i]
	s.n++
	op := opSpec{f: history.FRead, key: s.key, level: pickLevel(g.rng, g.levels)}
	if g.rng.Float64() >= g.readRatio {
		g.nextValue++
		op.f, op.value = history.FWrite, history.Int(g.nextValue)
		if g.cas && g.rng.Float64() < casShare {
			from := s.last
			if g.rng.IntN(4) == 0 {
				from = s.prev
			}
			op.f, op.from = history.FCas, history.Int(from)
		}
		s.prev, s.last = s.last, g.nextValue
	}
	return op
}

// maxUnknownPerKey retires a cas-register key early once this many of its
// writes and cas have unknown outcomes: each may take effect at any later
// point, and Porcupine's search grows exponentially with them (under kill,
// keys with 30 unknown outcomes and 20 ok ones timed out the check).
const maxUnknownPerKey = 8

// unknownOutcome tells the generator that a write or cas on key ended
// with an unknown outcome.
func (g *registerGen) unknownOutcome(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.slots {
		if s.key == key {
			s.unknown++
		}
	}
}

func (g *registerGen) keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedKeys(g.used)
}

// setGen: adds of fresh elements, each to its own key, and reads of
// recently added elements (to measure how soon adds become visible).
type setGen struct {
	mu        sync.Mutex
	rng       *rand.Rand
	levels    []string
	readRatio float64
	nextElem  int64
	recent    []string
}

const setRecent = 32

func setKey(e int64) string { return setPrefix + strconv.FormatInt(e, 10) }

func (g *setGen) next(int) opSpec {
	g.mu.Lock()
	defer g.mu.Unlock()
	lvl := pickLevel(g.rng, g.levels)
	if len(g.recent) > 0 && g.rng.Float64() < g.readRatio {
		return opSpec{f: history.FRead, key: g.recent[g.rng.IntN(len(g.recent))], level: lvl}
	}
	g.nextElem++
	k := setKey(g.nextElem)
	if len(g.recent) < setRecent {
		g.recent = append(g.recent, k)
	} else {
		g.recent[int(g.nextElem)%setRecent] = k
	}
	return opSpec{f: history.FAdd, key: k, value: history.Int(g.nextElem), level: lvl}
}

func (g *setGen) keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, g.nextElem)
	for e := int64(1); e <= g.nextElem; e++ {
		out = append(out, setKey(e))
	}
	return out
}

// sessionGen: each worker reads and writes its own SessionKeys keys, with
// increasing values (worker+1)*1e6 + sequence. Half the writes come right
// after a read of the same key by the same worker (read-then-write), which
// the session checker holds to the hybrid clock's promise: the write gets a
// version above the one read.
type sessionGen struct {
	mu        sync.Mutex
	levels    []string
	readRatio float64
	nkeys     int
	workers   []*sessionWorker
	seen      map[string]bool
}

type sessionWorker struct {
	rng *rand.Rand
	seq int64
	// then is the write to hand out after the read just handed out.
	then *opSpec
}

// readThenWriteShare is the share of session writes preceded by a read of
// their key.
const readThenWriteShare = 0.5

func (g *sessionGen) next(worker int) opSpec {
	w := g.workers[worker]
	if op := w.then; op != nil {
		w.then = nil
		return *op
	}
	k := fmt.Sprintf("%s%d/%d", sessionPrefix, worker, w.rng.IntN(g.nkeys))
	op := opSpec{f: history.FRead, key: k, level: pickLevel(w.rng, g.levels)}
	if w.rng.Float64() >= g.readRatio {
		w.seq++
		op.f, op.value = history.FWrite, history.Int(int64(worker+1)*1_000_000+w.seq)
		if w.rng.Float64() < readThenWriteShare {
			write := op
			w.then = &write
			op = opSpec{f: history.FRead, key: k, level: op.level}
		}
	}
	g.mu.Lock()
	g.seen[k] = true
	g.mu.Unlock()
	return op
}

func (g *sessionGen) keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return sortedKeys(g.seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// levelOption maps a level name to the SDK option.
func levelOption(l string) client.CallOption {
	switch l {
	case api.AdaptiveName:
		// The keyspace's default: whatever the tuner has in force.
		return client.WithConsistency(client.LevelDefault)
	case linearizableName:
		return client.WithConsistency(client.Linearizable)
	}
	switch pl, _ := api.ParseLevel(l); pl {
	case client.One, client.All:
		return client.WithConsistency(pl)
	}
	return client.WithConsistency(client.Quorum)
}

// casCompletion classifies a cas's outcome: applied is ok; a condition
// that did not hold is a definite fail marked NotApplied (the model checks
// it against the register's value); ErrContended and other definite errors
// are fail (nothing written); ErrUnknownOutcome, timeouts and anything
// unclassified are info.
func casCompletion(res *client.CondResult, err error) (history.Type, bool) {
	switch {
	case err == nil && res.Applied:
		return history.OK, false
	case err == nil:
		return history.Fail, true
	case errors.Is(err, client.ErrContended):
		return history.Fail, false
	}
	return completionType(true, err), false
}

// completionType classifies an operation's error as Jepsen does: fail only
// when the operation certainly had no effect, info when it may have.
//
// For writes the SDK's own classification decides: an error that is not
// ErrUnknownOutcome is definite (a validation error, NOT_ENOUGH_REPLICAS, a
// request that never left the client); a timeout, a lost connection, a
// write short of its W acknowledgements, anything that is not a client
// error, are info. Reads change nothing, but a read is fail only when it
// was refused before it ran (invalid, not enough replicas alive, not sent)
// and info otherwise (timeouts), so that the history says what is known;
// the checkers ignore both.
func completionType(isWrite bool, err error) history.Type {
	if err == nil {
		return history.OK
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return history.Info
	}
	if ce.Unknown || errors.Is(err, client.ErrUnknownOutcome) {
		return history.Info
	}
	if isWrite {
		return history.Fail
	}
	switch {
	case ce.Code == codes.InvalidArgument, ce.Code == codes.NotFound, ce.Code == codes.FailedPrecondition:
		return history.Fail
	case ce.Reason == client.ReasonNotEnoughReplicas:
		return history.Fail
	case ce.Code == codes.Unavailable && ce.Reason == "" && !errors.Is(err, context.DeadlineExceeded):
		return history.Fail // never reached a node
	}
	return history.Info
}

// decodeValue parses a stored value: an integer the harness wrote, or raw
// bytes that it never writes (a phantom).
func decodeValue(b []byte) (*int64, string) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || v <= 0 {
		s := string(b)
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		if s == "" {
			s = `""`
		}
		return nil, s
	}
	return &v, ""
}

func encodeValue(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }

func toVersion(v client.Version) *history.Version {
	if v.IsZero() {
		return nil
	}
	return &history.Version{Timestamp: v.Timestamp, Node: v.Node}
}

// fillReceipt copies a receipt into a completion.
func fillReceipt(op *history.Op, r client.Receipt) {
	op.Node, op.Epoch, op.Acked, op.Required, op.N = r.Coordinator, r.Epoch, r.Acked, r.Required, r.N
}

// fillError copies what an error says into a completion.
func fillError(op *history.Op, err error) {
	op.Error = err.Error()
	var ce *client.Error
	if errors.As(err, &ce) {
		op.Acked, op.Required = ce.Acked, ce.Required
	}
}

// elementOf returns the element of a set key, or false.
func elementOf(key string) (int64, bool) {
	if !strings.HasPrefix(key, setPrefix) {
		return 0, false
	}
	e, err := strconv.ParseInt(strings.TrimPrefix(key, setPrefix), 10, 64)
	return e, err == nil
}

func sortStrings(s []string) { slices.Sort(s) }
