package replication

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/testseed"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// TestCoreIsPure keeps the coordinator core (core*.go) a state machine: no
// goroutines, no clock, no random source, no locks, no contexts, and no
// reach into the shell.
func TestCoreIsPure(t *testing.T) {
	files, err := filepath.Glob("core*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbiddenImports := map[string]bool{"math/rand": true, "math/rand/v2": true, "crypto/rand": true,
		"sync": true, "sync/atomic": true, "context": true, "os": true, "net": true, "log/slog": true}
	forbiddenTime := map[string]bool{"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
		"AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if len(name) > 8 && name[len(name)-8:] == "_test.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); forbiddenImports[p] {
				t.Errorf("%s imports %s", name, p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: go statement", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "time" && forbiddenTime[n.Sel.Name] {
					t.Errorf("%s: time.%s", fset.Position(n.Pos()), n.Sel.Name)
				}
			case *ast.Ident:
				if n.Name == "Coordinator" {
					t.Errorf("%s: the core reaches into the Coordinator", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
	if checked < 4 {
		t.Fatalf("checked %d core files, want at least 4", checked)
	}
}

// propReplica is the reference model's replica: the newest record it
// holds, and whether it is up.
type propReplica struct {
	rec  storage.Record
	has  bool
	down bool
}

// propCluster answers an op's requests as replicas holding the model's
// state would, delivering replies in a random order, failing some, and
// firing the hedge timer and the deadline at random points.
type propCluster struct {
	rng      *rand.Rand
	replicas map[string]*propReplica
	inFlight []send
	hints    []hintBatch
	// stored are the hint batches stored, with the targets.
	stored   map[int][]string
	failRate float64
}

func (c *propCluster) apply(s send) reply {
	rp := c.replicas[s.to]
	r := reply{id: s.id}
	if rp.down || c.rng.Float64() < c.failRate {
		r.err = fmt.Errorf("replica %s failed", s.to)
		return r
	}
	switch s.kind {
	case sendWrite:
		rec := RecordFromPB(s.write.GetMutations()[0].GetRecord())
		if !rp.has || rp.rec.Version.Less(rec.Version) {
			rp.rec, rp.has = rec, true
		}
		r.write = &kvpb.ReplicaWriteResponse{Results: []*kvpb.MutationResult{{Ok: true}}}
	case sendRead, sendDigest:
		r.read = &kvpb.ReplicaReadResponse{}
		if rp.has {
			rec := rp.rec
			if s.kind == sendDigest {
				rec.Value = nil
			}
			r.read.Found, r.read.Record = true, RecordToPB(rec)
		}
	}
	return r
}

// drive runs op against the cluster until it finishes; check is called
// with every answer and effect.
func (c *propCluster) drive(t *testing.T, o op, plan *opPlan, deadlineChance float64) (ans *answer, hintsAtAnswer map[int][]string) {
	t.Helper()
	var queue []event
	handle := func(eff effects) bool {
		if eff.plan {
			queue = append(queue, event{kind: evPlanned, plan: plan})
		}
		c.inFlight = append(c.inFlight, eff.sends...)
		c.hints = append(c.hints, eff.hints...)
		if eff.checkLease != nil {
			queue = append(queue, event{kind: evLeaseChecked})
		}
		if eff.catchUp != 0 {
			t.Fatalf("catch-up without refusals")
		}
		if eff.done != nil {
			if ans != nil {
				t.Fatalf("answered twice: %+v then %+v", ans, eff.done)
			}
			ans = eff.done
			hintsAtAnswer = map[int][]string{}
			for id, targets := range c.stored {
				hintsAtAnswer[id] = targets
			}
		}
		return eff.finished
	}
	finished := handle(o.begin())
	deadlineSent := false
	for step := 0; !finished; step++ {
		if step > 10_000 {
			t.Fatal("op does not finish")
		}
		if len(queue) > 0 {
			ev := queue[0]
			queue = queue[1:]
			finished = handle(o.step(ev))
			continue
		}
		switch n := c.rng.IntN(10); {
		case n == 0 && !deadlineSent && c.rng.Float64() < deadlineChance:
			deadlineSent = true
			finished = handle(o.step(event{kind: evDeadline, err: fmt.Errorf("deadline")}))
		case n == 1:
			finished = handle(o.step(event{kind: evHedge}))
		case n <= 4 && len(c.hints) > 0:
			i := c.rng.IntN(len(c.hints))
			h := c.hints[i]
			c.hints = slices.Delete(c.hints, i, i+1)
			c.stored[h.id] = h.targets
			finished = handle(o.step(event{kind: evHintsStored, hint: h.id}))
		case len(c.inFlight) > 0:
			i := c.rng.IntN(len(c.inFlight))
			s := c.inFlight[i]
			c.inFlight = slices.Delete(c.inFlight, i, i+1)
			finished = handle(o.step(event{kind: evReply, reply: c.apply(s)}))
		case len(c.hints) > 0:
			h := c.hints[0]
			c.hints = c.hints[1:]
			c.stored[h.id] = h.targets
			finished = handle(o.step(event{kind: evHintsStored, hint: h.id}))
		default:
			t.Fatalf("op waits for nothing that can come (answered %v)", ans != nil)
		}
	}
	if ans == nil {
		t.Fatal("finished without an answer")
	}
	// A write finishes only when every reply is in (a late failure is
	// still a hint); a read that answered an error drops what is late.
	if _, read := o.(*readOp); len(c.inFlight) > 0 && (!read || ans.err == nil) {
		t.Fatalf("finished with %d requests in flight: %v", len(c.inFlight), ans.err)
	}
	return ans, hintsAtAnswer
}

func randomMembers(rng *rand.Rand, n int) (alive, dead []string) {
	for i := range n {
		id := string(rune('a' + i))
		if rng.IntN(4) == 0 {
			dead = append(dead, id)
		} else {
			alive = append(alive, id)
		}
	}
	return alive, dead
}

// TestWriteOpProperties drives writes through random schedules (replies
// reordered and failing, hints stored late, deadlines) and checks them
// against the model: an acknowledged write is on W replicas and the hints
// of every replica that lacked it when it was acknowledged are stored; a
// write never answers twice; a definite failure sent nothing; with no
// failures and no deadline every write succeeds; no hint is stored for a
// write no replica acknowledged, nor for the coordinator itself.
func TestWriteOpProperties(t *testing.T) {
	for _, seed := range testseed.FromEnv(t, "CORE_PROP", 300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(5)
		alive, dead := randomMembers(rng, n)
		w := 1 + rng.IntN(n)
		pol, err := quorum.Resolve(quorum.Custom, n, 1, w)
		if err != nil {
			t.Fatal(err)
		}
		self := "co"
		if rng.IntN(2) == 0 && len(alive) > 0 {
			self = alive[0]
		}
		c := &propCluster{rng: rng, replicas: map[string]*propReplica{}, stored: map[int][]string{}, failRate: []float64{0, 0.2, 0.5}[rng.IntN(3)]}
		for _, id := range alive {
			c.replicas[id] = &propReplica{}
		}
		for _, id := range dead {
			c.replicas[id] = &propReplica{down: true}
		}
		rec := storage.Record{Key: []byte("k"), Value: []byte("v"), Version: storage.Version{Timestamp: 100 << 16, Node: 1}}
		plan := &opPlan{ks: KeyspaceConfig{Name: "ks", N: n, Epoch: 1}, pol: pol, alive: alive, dead: dead, ranked: alive,
			replicas: append(slices.Clone(alive), dead...)}
		var m Metrics
		deadline := []float64{0, 0.3}[rng.IntN(2)]
		ans, hinted := c.drive(t, newWriteOp(self, "ks", rec, &m), plan, deadline)
		desc := fmt.Sprintf("seed %d: N=%d W=%d alive=%v dead=%v self=%s fail=%.1f deadline=%.1f", seed, n, w, alive, dead, self, c.failRate, deadline)

		holders := 0
		for _, rp := range c.replicas {
			if rp.has {
				holders++
			}
		}
		switch {
		case ans.err == nil:
			if holders < w {
				t.Fatalf("%s: acknowledged with %d replicas holding it", desc, holders)
			}
			// The dead replicas lack it: their hints were on disk before
			// the client heard of the write.
			for _, id := range dead {
				if id != self && !slices.ContainsFunc(mapValues(hinted), func(ts []string) bool { return slices.Contains(ts, id) }) {
					t.Fatalf("%s: acknowledged without a stored hint for dead replica %s", desc, id)
				}
			}
		case len(alive) < w:
			if holders > 0 || len(c.stored)+len(c.hints) > 0 {
				t.Fatalf("%s: a definite failure wrote %d replicas and hinted", desc, holders)
			}
		case c.failRate == 0 && deadline == 0:
			t.Fatalf("%s: failed with every replica up: %v", desc, ans.err)
		}
		if holders == 0 && len(c.stored) > 0 {
			t.Fatalf("%s: hints stored for a write no replica has", desc)
		}
		for _, targets := range c.stored {
			if slices.Contains(targets, self) {
				t.Fatalf("%s: the coordinator hinted itself", desc)
			}
			for _, id := range targets {
				if c.replicas[id].has {
					t.Fatalf("%s: hint for replica %s, which has the write", desc, id)
				}
			}
		}
		// Every replica that lacks the write, once everything is in, has a
		// hint (stored or being stored) if any replica acknowledged.
		if holders > 0 {
			var all []string
			for _, ts := range c.stored {
				all = append(all, ts...)
			}
			for _, h := range c.hints {
				all = append(all, h.targets...)
			}
			for id, rp := range c.replicas {
				if !rp.has && id != self && !slices.Contains(all, id) {
					t.Fatalf("%s: replica %s lacks the write and has no hint", desc, id)
				}
			}
		}
	}
}

func mapValues(m map[int][]string) [][]string {
	var out [][]string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestReadOpProperties drives reads over replicas holding random versions
// through random schedules and checks them against the model: the answer
// is a version some replica held, with that version's value, and the
// newest when R is every alive replica and nothing fails; with every repair
// succeeding, the answered version is on R replicas when the client hears
// it; a read that asked every replica and met no failure leaves every
// replica with the newest version.
func TestReadOpProperties(t *testing.T) {
	for _, seed := range testseed.FromEnv(t, "CORE_PROP", 300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		n := 1 + rng.IntN(5)
		alive, dead := randomMembers(rng, n)
		r := 1 + rng.IntN(n)
		pol, err := quorum.Resolve(quorum.Custom, n, r, 1)
		if err != nil {
			t.Fatal(err)
		}
		failRate := []float64{0, 0, 0.2}[rng.IntN(3)]
		c := &propCluster{rng: rng, replicas: map[string]*propReplica{}, stored: map[int][]string{}, failRate: failRate}
		values := map[storage.Version]string{}
		var newest storage.Version
		for i := range n {
			id := string(rune('a' + i))
			rp := &propReplica{down: slices.Contains(dead, id)}
			if v := rng.IntN(4); v > 0 {
				ver := storage.Version{Timestamp: uint64(v*100) << 16, Node: uint32(v)}
				rp.rec = storage.Record{Key: []byte("k"), Version: ver, Value: []byte("value-" + strconv.Itoa(v)), Tombstone: v == 3 && seed%5 == 0}
				if rp.rec.Tombstone {
					rp.rec.Value = nil
				}
				rp.has = true
				values[ver] = string(rp.rec.Value)
				if newest.Less(ver) && !rp.down {
					newest = ver
				}
			}
			c.replicas[id] = rp
		}
		readAll := rng.IntN(3) == 0
		var hedge time.Duration
		if rng.IntN(3) == 0 {
			hedge = 10 * time.Millisecond
		}
		ranked := slices.Clone(alive)
		rng.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
		plan := &opPlan{ks: KeyspaceConfig{Name: "ks", N: n, Epoch: 1, HedgeAfter: hedge}, pol: pol, alive: alive, dead: dead,
			ranked: ranked, readAll: readAll, replicas: append(slices.Clone(alive), dead...)}
		var m Metrics
		self := "co"
		if len(ranked) > 0 && rng.IntN(2) == 0 {
			self = ranked[0]
		}
		desc := fmt.Sprintf("seed %d: N=%d R=%d alive=%v ranked=%v readAll=%t hedge=%v fail=%.1f", seed, n, r, alive, ranked, readAll, hedge, failRate)
		// Which replicas hold the answer when the client hears it.
		op := newReadOp(self, "ks", []byte("k"), time.UnixMilli(0), &m)
		ans, _ := c.drive(t, op, plan, 0)
		switch {
		case ans.err == nil:
			if ans.found {
				v, ok := values[ans.record.Version]
				if !ok {
					t.Fatalf("%s: answered version %v that no replica held", desc, ans.record.Version)
				}
				if v != string(ans.record.Value) {
					t.Fatalf("%s: answered %q for a version whose value is %q", desc, ans.record.Value, v)
				}
			}
			if failRate == 0 && r == len(alive) && newest != (storage.Version{}) && (!ans.found || ans.record.Version != newest) {
				t.Fatalf("%s: a read that waited for every alive replica answered %v, newest is %v", desc, ans.record.Version, newest)
			}
		case len(alive) >= r && failRate == 0:
			t.Fatalf("%s: failed with every alive replica answering: %v", desc, ans.err)
		}
		if ans.err == nil && failRate == 0 && ans.found {
			holding := 0
			for _, rp := range c.replicas {
				if rp.has && !rp.rec.Version.Less(ans.record.Version) {
					holding++
				}
			}
			if holding < r {
				t.Fatalf("%s: after the read only %d replicas hold %v, R=%d", desc, holding, ans.record.Version, r)
			}
		}
		if ans.err == nil && failRate == 0 && readAll && hedge == 0 && newest != (storage.Version{}) {
			for id, rp := range c.replicas {
				if !rp.down && (!rp.has || rp.rec.Version != newest) {
					t.Fatalf("%s: replica %s holds %v after a read of every replica, newest %v", desc, id, rp.rec.Version, newest)
				}
			}
		}
	}
}
