package paxos

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/adaptkv/adaptkv/storage"
)

// TestDataDriven runs the scripts in testdata: a small interaction
// environment in the manner of etcd-io/raft's rafttest, with in-memory
// replicas (an acceptor State and a stored record each) and named ops whose
// messages the script delivers, drops or lets time out one by one. Every
// effect is printed. Rewrite with -rewrite and review the diff.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		e := newEnv()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := e.run(d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

type envReplica struct {
	name  string
	st    State
	rec   storage.Record
	found bool
}

type envOp struct {
	p       *Proposer
	r       *Reader
	pending []Message
}

type env struct {
	replicas []*envReplica
	ops      map[string]*envOp
	acc      State // the standalone acceptor of the acc-* commands
}

func newEnv() *env { return &env{ops: map[string]*envOp{}} }

func (e *env) names() []string {
	var ns []string
	for _, r := range e.replicas {
		ns = append(ns, r.name)
	}
	return ns
}

func (e *env) replica(name string) *envReplica {
	for _, r := range e.replicas {
		if r.name == name {
			return r
		}
	}
	return nil
}

func parseBallot(s string) (Ballot, error) {
	c, n, _ := strings.Cut(s, ".")
	cv, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Ballot{}, fmt.Errorf("ballot %q: %w", s, err)
	}
	nv, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		return Ballot{}, fmt.Errorf("ballot %q: %w", s, err)
	}
	return Ballot{Counter: cv, Node: uint32(nv)}, nil
}

func parseVersion(s string) (storage.Version, error) {
	b, err := parseBallot(s)
	return storage.Version{Timestamp: b.Counter, Node: b.Node}, err
}

// parseRecord reads value@ts.node, or del@ts.node for a tombstone.
func parseRecord(s string) (storage.Record, error) {
	v, at, ok := strings.Cut(s, "@")
	if !ok {
		return storage.Record{}, fmt.Errorf("record %q: want value@ts.node", s)
	}
	ver, err := parseVersion(at)
	if err != nil {
		return storage.Record{}, err
	}
	rec := storage.Record{Key: []byte("k"), Version: ver}
	if v == "del" {
		rec.Tombstone = true
	} else {
		rec.Value = []byte(v)
	}
	return rec, nil
}

func (e *env) run(d *datadriven.TestData) (string, error) {
	args := map[string]string{}
	var flags []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			flags = append(flags, a.Key)
			continue
		}
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	num := func(k string) uint64 {
		n, _ := strconv.ParseUint(args[k], 10, 64)
		return n
	}
	switch d.Cmd {
	case "replicas":
		e.replicas = nil
		for _, n := range flags {
			e.replicas = append(e.replicas, &envReplica{name: n})
		}
		if s, ok := args["record"]; ok {
			rec, err := parseRecord(s)
			if err != nil {
				return "", err
			}
			for _, r := range e.replicas {
				r.rec, r.found = rec, true
			}
		}
		return e.state(), nil
	case "record":
		// record r1 a@10.9: a plain (non-Paxos) write landed on a replica.
		rec, err := parseRecord(args["value"])
		if err != nil {
			return "", err
		}
		for _, n := range strings.Split(args["on"], ",") {
			r := e.replica(n)
			if r == nil {
				return "", fmt.Errorf("no replica %q", n)
			}
			if !r.found || r.rec.Version.Less(rec.Version) {
				r.rec, r.found = rec, true
			}
		}
		return e.state(), nil
	case "state":
		return e.state(), nil
	case "cas":
		req := Request{Key: []byte("k"), Node: uint32(num("node")), Replicas: e.names(), MaxAttempts: int(num("attempts"))}
		switch {
		case args["if-value"] != "":
			req.Cond = Condition{Kind: IfValue, Value: []byte(args["if-value"])}
		case args["if-version"] != "":
			v, err := parseVersion(args["if-version"])
			if err != nil {
				return "", err
			}
			req.Cond = Condition{Kind: IfVersion, Version: v}
		case slices.Contains(flags, "if-absent"):
			req.Cond = Condition{Kind: IfAbsent}
		case slices.Contains(flags, "read"):
			req.Cond = Condition{Kind: ReadOnly}
		}
		if v, ok := args["value"]; ok {
			req.Value = []byte(v)
		} else {
			req.Delete = true
		}
		req.Renew = slices.Contains(flags, "renew")
		req.Thrifty = slices.Contains(flags, "thrifty")
		if from := args["lease-from"]; from != "" {
			// lease-from=p1: the op runs at p1's coordinator, after it,
			// with the lease p1 left (none: a full round).
			prev, ok := e.ops[from]
			if !ok || prev.p == nil {
				return "", fmt.Errorf("no cas op %q", from)
			}
			req.Lease, req.Above = prev.p.Lease(), prev.p.Drawn()
		}
		op := &envOp{p: NewProposer(req)}
		e.ops[args["name"]] = op
		return e.effects(op, op.p.Start(num("clock"))), nil
	case "reader":
		// reader name=x [order=r2,r3,r1]: the replicas in the order the
		// shell would give them (nearest first); default, as declared.
		names := e.names()
		if o := args["order"]; o != "" {
			names = strings.Split(o, ",")
		}
		op := &envOp{r: NewReader(names)}
		e.ops[args["name"]] = op
		return e.effects(op, op.r.Start()), nil
	case "acc-prepare", "acc-propose", "acc-commit", "acc-peek":
		return e.acceptor(d.Cmd, args, flags)
	case "lease":
		// lease name=p1: what p1 leaves for its coordinator's next op.
		op, ok := e.ops[args["name"]]
		if !ok || op.p == nil {
			return "", fmt.Errorf("no cas op %q", args["name"])
		}
		l := op.p.Lease()
		if l == nil {
			return "none\n", nil
		}
		return fmt.Sprintf("ballot %v on %s\n", l.Ballot, propString(l.Prior)), nil
	}
	op, ok := e.ops[args["name"]]
	if !ok {
		return "", fmt.Errorf("no op %q", args["name"])
	}
	step := func(ev Event) Effects {
		if op.p != nil {
			return op.p.Step(ev)
		}
		return op.r.Step(ev)
	}
	switch d.Cmd {
	case "deliver":
		// deliver name=p1 to=r1,r2 [drop-reply] [fail]: the op's pending
		// messages to these replicas arrive, in the order given.
		var b strings.Builder
		for _, to := range strings.Split(args["to"], ",") {
			r := e.replica(to)
			if r == nil {
				return "", fmt.Errorf("no replica %q", to)
			}
			// The newest message to the replica: older ones stay pending
			// (late, or dropped with drop) until the script delivers them.
			i := -1
			for j, m := range op.pending {
				if m.To == to {
					i = j
				}
			}
			if i < 0 {
				fmt.Fprintf(&b, "%s: nothing pending\n", to)
				continue
			}
			m := op.pending[i]
			op.pending = slices.Delete(op.pending, i, i+1)
			var ev Event
			if slices.Contains(flags, "fail") {
				// The request never reached the replica.
				ev = Event{Kind: replyKind[m.Kind], From: to, Round: m.Round, Err: errors.New("connection refused")}
				fmt.Fprintf(&b, "%s: %s → fails: %v\n", to, m.Kind, ev.Err)
			} else {
				ev = e.handle(r, m)
				fmt.Fprintf(&b, "%s: %s → %s\n", to, m.Kind, replyString(ev))
			}
			if slices.Contains(flags, "drop-reply") {
				continue
			}
			b.WriteString(indent(e.effects(op, step(ev))))
		}
		return b.String(), nil
	case "drop":
		var kept []Message
		for _, m := range op.pending {
			if !slices.Contains(strings.Split(args["to"], ","), m.To) {
				kept = append(kept, m)
			}
		}
		op.pending = kept
		return "ok\n", nil
	case "timeout":
		round := 0
		if op.p != nil {
			round = op.p.round
		} else {
			round = op.r.round
		}
		return e.effects(op, step(Event{Kind: EvTimeout, Round: round})), nil
	case "retry":
		return e.effects(op, step(Event{Kind: EvRetry, Clock: num("clock")})), nil
	}
	return "", fmt.Errorf("unknown command %q", d.Cmd)
}

var replyKind = map[MessageKind]EventKind{MsgPrepare: EvPromise, MsgPropose: EvAccepted, MsgCommit: EvCommitted, MsgRead: EvRead}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// handle is a replica processing a message, the way the replica's shell
// will: the acceptor's transition and the record, atomically.
func (e *env) handle(r *envReplica, m Message) Event {
	ev := Event{From: r.name, Round: m.Round}
	switch m.Kind {
	case MsgPrepare:
		ev.Kind = EvPromise
		r.st, ev.Promise = Prepare(r.st, m.Ballot)
		ev.Record, ev.Found = r.rec, r.found
	case MsgRead:
		ev.Kind = EvRead
		ev.Promise = Peek(r.st)
		ev.Record, ev.Found = r.rec, r.found
	case MsgPropose:
		ev.Kind = EvAccepted
		if pr := m.Prior; !pr.IsZero() && !pr.Noop && (!r.found || r.rec.Version.Less(pr.Record.Version)) {
			r.rec, r.found = pr.Record, true
		}
		r.st, ev.OK, ev.Promise.Promised, ev.Leased = ProposeNext(Ballot{}, r.st, m.Prior, m.Proposal, m.Next)
	case MsgCommit:
		ev.Kind = EvCommitted
		r.st = Commit(r.st, m.Proposal.Ballot)
		if p := m.Proposal; !p.Noop && (!r.found || r.rec.Version.Less(p.Record.Version)) {
			r.rec, r.found = p.Record, true
		}
	}
	return ev
}

func replyString(ev Event) string {
	switch ev.Kind {
	case EvPromise:
		if !ev.Promise.OK {
			return fmt.Sprintf("refused (promised %v)", ev.Promise.Promised)
		}
		return fmt.Sprintf("promise (was %v, accepted %s, committed %v) record %s", ev.Promise.Promised, propString(ev.Promise.Accepted), ev.Promise.Committed, recString(ev.Record, ev.Found))
	case EvRead:
		return fmt.Sprintf("accepted %s, committed %v, record %s", propString(ev.Promise.Accepted), ev.Promise.Committed, recString(ev.Record, ev.Found))
	case EvAccepted:
		if ev.OK && ev.Leased {
			return "accepted, promised next"
		}
		if ev.OK {
			return "accepted"
		}
		return fmt.Sprintf("refused (promised %v)", ev.Promise.Promised)
	case EvCommitted:
		return "committed"
	}
	return "?"
}

func (e *env) state() string {
	var b strings.Builder
	for _, r := range e.replicas {
		fmt.Fprintf(&b, "%s: %s record %s\n", r.name, stateString(r.st), recString(r.rec, r.found))
	}
	return b.String()
}

// effects prints eff, grouping the sends that differ only in their target.
func (e *env) effects(op *envOp, eff Effects) string {
	var b strings.Builder
	for i := 0; i < len(eff.Send); {
		m := eff.Send[i]
		var tos []string
		j := i
		for ; j < len(eff.Send); j++ {
			x := eff.Send[j]
			if x.Kind != m.Kind || x.Ballot != m.Ballot || !x.Proposal.equal(m.Proposal) || x.Round != m.Round || !x.Prior.equal(m.Prior) || x.Next != m.Next || x.Lazy != m.Lazy {
				break
			}
			tos = append(tos, x.To)
		}
		what := m.Kind.String()
		if m.Lazy {
			what = "lazy " + what
		}
		switch m.Kind {
		case MsgPrepare:
			what += " " + m.Ballot.String()
		case MsgPropose, MsgCommit:
			what += " " + propString(m.Proposal)
		}
		if !m.Prior.IsZero() {
			what += " after committing " + propString(m.Prior)
		}
		if !m.Next.IsZero() {
			what += " promising " + m.Next.String()
		}
		fmt.Fprintf(&b, "send %s → %s (round %d)\n", what, strings.Join(tos, ","), m.Round)
		op.pending = append(op.pending, eff.Send[i:j]...)
		i = j
	}
	if eff.Timer != 0 {
		hedge := ""
		if eff.Hedge {
			hedge = " (hedge)"
		}
		fmt.Fprintf(&b, "timer round %d%s\n", eff.Timer, hedge)
	}
	if eff.Backoff > 0 {
		fmt.Fprintf(&b, "backoff %v\n", eff.Backoff)
	}
	if eff.Escalate {
		b.WriteString("escalate to a Paxos read\n")
	}
	if o := eff.Done; o != nil {
		switch {
		case o.Err != nil:
			fmt.Fprintf(&b, "answer error: %v\n", o.Err)
		case o.Applied:
			fmt.Fprintf(&b, "answer applied %s\n", recString(o.Record, true))
		default:
			fmt.Fprintf(&b, "answer not applied, current %s\n", recString(o.Record, o.Found))
		}
	}
	if eff.Finished {
		b.WriteString("finished\n")
	}
	return b.String()
}

func (e *env) acceptor(cmd string, args map[string]string, flags []string) (string, error) {
	b, err := parseBallot(orDefault(args["b"], "0.0"))
	if err != nil {
		return "", err
	}
	var out string
	switch cmd {
	case "acc-prepare":
		var p Promise
		e.acc, p = Prepare(e.acc, b)
		if p.OK {
			out = fmt.Sprintf("promised (was %v, accepted %s, committed %v)", p.Promised, propString(p.Accepted), p.Committed)
		} else {
			out = fmt.Sprintf("refused (promised %v)", p.Promised)
		}
	case "acc-propose":
		p := Proposal{Ballot: b, Noop: slices.Contains(flags, "noop")}
		if !p.Noop {
			if p.Record, err = parseRecord(args["record"]); err != nil {
				return "", err
			}
		}
		var ok bool
		var promised Ballot
		e.acc, ok, promised = Propose(e.acc, p)
		out = "accepted"
		if !ok {
			out = fmt.Sprintf("refused (promised %v)", promised)
		}
	case "acc-commit":
		e.acc = Commit(e.acc, b)
		out = "ok"
	case "acc-peek":
		p := Peek(e.acc)
		ip, ok := e.acc.InProgress()
		out = fmt.Sprintf("accepted %s, committed %v, in progress %v %s", propString(p.Accepted), p.Committed, ok, propString(ip))
	}
	enc := AppendState(nil, e.acc)
	back, err := DecodeState(enc)
	if err != nil || stateString(back) != stateString(e.acc) {
		return "", fmt.Errorf("state does not round-trip: %v", err)
	}
	return fmt.Sprintf("%s\nstate %s (%d bytes)\n", out, stateString(e.acc), len(enc)), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
