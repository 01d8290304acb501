package replication

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// TestCoreDataDriven runs the scripts in testdata/core: each creates one
// op (write, read or scan), feeds it events (a plan, replies, timers, the
// deadline, stored hints, lease checks, catch-ups) and prints every effect.
//
// Commands:
//
//	write key=K [value=V] [version=T] [self=ID]      a put (delete: tombstone)
//	read key=K [self=ID] [start=T] [min=T[.n]]       a get; start is the read's start (ms),
//	                                                 min a session's floor for the key
//	scan [start=K] [end=K] [limit=L] [self=ID]
//	plan n=N level=L [r=R w=W] [epoch=E] alive=a,b [dead=c] [pending=d] [pending-dead=e]
//	     [ranked=b,a] [read-all] [hedge=20ms] [ack-delay=5ms] [fenced]
//	plan nodes=a,b,c ranges=a.b.c;b.c.a n=N level=L [epoch=E]   (scans)
//	plan-error [lease|moved=E|not-found]
//	reply id=I ok | err=TEXT | known=E | found=T[.node][:value] | tombstone=T | missing
//	reply id=I records=k1@T,k2@T~,...   (scans; ~ marks a tombstone)
//	hedge | deadline | hints-stored id=I | lease [moved=E|lost] | caught-up [err=TEXT]
//	metrics
//
// Versions are written as their wall time in milliseconds (T), optionally
// with a node number (T.n).
func TestCoreDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/core", func(t *testing.T, path string) {
		h := &coreHarness{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := h.run(d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

type coreHarness struct {
	op      op
	metrics Metrics
	sends   map[int]send
}

func (h *coreHarness) run(d *datadriven.TestData) (string, error) {
	args := map[string]string{}
	var flags []string
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 {
			flags = append(flags, a.Key)
			continue
		}
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	self := args["self"]
	if self == "" {
		self = "co" // a coordinator that is not a replica of the key
	}
	switch d.Cmd {
	case "write":
		rec := storage.Record{Key: []byte(args["key"]), Version: parseVersion(orDefault(args["version"], "100"))}
		if v, ok := args["value"]; ok {
			rec.Value = []byte(v)
		} else {
			rec.Tombstone = true
		}
		h.reset()
		h.op = newWriteOp(self, "ks", rec, &h.metrics)
		return h.effects(h.op.begin()), nil
	case "read":
		h.reset()
		start := time.UnixMilli(int64(atoi(orDefault(args["start"], "1000"))))
		ro := newReadOp(self, "ks", []byte(args["key"]), start, &h.metrics)
		if m, ok := args["min"]; ok {
			ro.min = parseVersion(m)
		}
		h.op = ro
		return h.effects(h.op.begin()), nil
	case "scan":
		h.reset()
		var end []byte
		if e, ok := args["end"]; ok {
			end = []byte(e)
		}
		h.op = newScanOp(self, "ks", []byte(args["start"]), end, atoi(orDefault(args["limit"], "0")), &h.metrics)
		return h.effects(h.op.begin()), nil
	}
	if h.op == nil {
		return "", errors.New("no op: start with write, read or scan")
	}
	var ev event
	switch d.Cmd {
	case "plan":
		ks := KeyspaceConfig{Name: "ks", N: atoi(args["n"]), Epoch: uint64(atoi(orDefault(args["epoch"], "1"))),
			Fenced: slices.Contains(flags, "fenced")}
		if p, ok := args["pending-n"]; ok {
			ks.PendingN = atoi(p)
		}
		if hd, ok := args["hedge"]; ok {
			dur, err := time.ParseDuration(hd)
			if err != nil {
				return "", err
			}
			ks.HedgeAfter = dur
		}
		level := quorum.Custom
		if l := orDefault(args["level"], "quorum"); l != "custom" {
			var err error
			if level, err = quorum.ParseLevel(l); err != nil {
				return "", err
			}
		}
		pol, err := quorum.Resolve(level, ks.N, atoi(orDefault(args["r"], "0")), atoi(orDefault(args["w"], "0")))
		if err != nil {
			return "", err
		}
		if nodes, ok := args["nodes"]; ok {
			sp := &scanPlan{ks: ks, pol: pol, nodes: split(nodes)}
			for i, g := range strings.Split(args["ranges"], ";") {
				sp.ranges = append(sp.ranges, ring.Range{After: uint64(i) * 100, Through: uint64(i+1) * 100, Replicas: strings.Split(g, ".")})
			}
			ev = event{kind: evPlanned, scan: sp}
			break
		}
		p := &opPlan{ks: ks, pol: pol, alive: split(args["alive"]), dead: split(args["dead"]),
			pendingAlive: split(args["pending"]), pendingDead: split(args["pending-dead"]),
			readAll: slices.Contains(flags, "read-all")}
		p.replicas = append(slices.Clone(p.alive), p.dead...)
		p.ranked = p.alive
		if r, ok := args["ranked"]; ok {
			p.ranked = split(r)
		}
		if ad, ok := args["ack-delay"]; ok {
			dur, err := time.ParseDuration(ad)
			if err != nil {
				return "", err
			}
			p.ackDelay = dur
		}
		ev = event{kind: evPlanned, plan: p}
	case "plan-error":
		ev = event{kind: evPlanned, err: fmt.Errorf("keyspace %q: %w", "ks", ErrKeyspaceNotFound)}
		switch {
		case slices.Contains(flags, "lease"):
			ev.err = &LeaseError{Keyspace: "ks", Epoch: 1}
		case args["moved"] != "":
			ev.err = &LeaseError{Keyspace: "ks", Epoch: 1, Lost: true, Moved: uint64(atoi(args["moved"]))}
		}
	case "reply":
		id := atoi(args["id"])
		s, ok := h.sends[id]
		if !ok {
			return "", fmt.Errorf("no request %d was sent", id)
		}
		r, err := makeReply(s, args, flags)
		if err != nil {
			return "", err
		}
		ev = event{kind: evReply, reply: r}
	case "hedge":
		ev = event{kind: evHedge}
	case "deadline":
		ev = event{kind: evDeadline, err: errors.New("context deadline exceeded")}
	case "hints-stored":
		ev = event{kind: evHintsStored, hint: atoi(args["id"])}
	case "lease":
		ev = event{kind: evLeaseChecked}
		switch {
		case args["moved"] != "":
			ev.err = &LeaseError{Keyspace: "ks", Epoch: 1, Lost: true, Moved: uint64(atoi(args["moved"]))}
		case slices.Contains(flags, "lost"):
			ev.err = &LeaseError{Keyspace: "ks", Epoch: 1, Lost: true, Expired: time.Second}
		}
	case "caught-up":
		ev = event{kind: evCaughtUp}
		if e, ok := args["err"]; ok {
			ev.err = fmt.Errorf("catch up: %w: %s", ErrStaleEpoch, e)
		}
	case "metrics":
		return h.printMetrics(), nil
	default:
		return "", fmt.Errorf("unknown command %q", d.Cmd)
	}
	return h.effects(h.op.step(ev)), nil
}

func (h *coreHarness) reset() {
	h.metrics = Metrics{}
	h.sends = map[int]send{}
}

// effects prints eff, one line per effect, in the order the shell acts.
func (h *coreHarness) effects(eff effects) string {
	var b strings.Builder
	if eff.plan {
		b.WriteString("plan\n")
	}
	for _, s := range eff.sends {
		h.sends[s.id] = s
		fmt.Fprintf(&b, "send %d %s → %s", s.id, s.kind, s.to)
		if s.observe {
			fmt.Fprintf(&b, " rank=%d", s.rank)
		}
		if s.inline {
			b.WriteString(" inline")
		}
		if s.detached {
			b.WriteString(" detached")
		}
		switch {
		case s.write != nil:
			m := s.write.GetMutations()[0]
			fmt.Fprintf(&b, " epoch=%d %s", m.GetEpoch(), fmtRecord(RecordFromPB(m.GetRecord())))
		case s.read != nil:
			fmt.Fprintf(&b, " epoch=%d", s.read.GetEpoch())
		case s.scan != nil:
			fmt.Fprintf(&b, " epoch=%d", s.scan.GetEpoch())
		}
		b.WriteString("\n")
	}
	for _, hb := range eff.hints {
		fmt.Fprintf(&b, "hint %d → %s %s\n", hb.id, strings.Join(hb.targets, ","), fmtRecord(RecordFromPB(hb.mut.GetRecord())))
	}
	if eff.hedge > 0 {
		fmt.Fprintf(&b, "arm hedge %v\n", eff.hedge)
	}
	if eff.checkLease != nil {
		fmt.Fprintf(&b, "check lease epoch=%d\n", eff.checkLease.Epoch)
	}
	if eff.catchUp > 0 {
		fmt.Fprintf(&b, "catch up to epoch %d\n", eff.catchUp)
	}
	if eff.noteEpoch > 0 {
		fmt.Fprintf(&b, "note epoch %d\n", eff.noteEpoch)
	}
	if p := eff.probe; p != nil {
		fmt.Fprintf(&b, "probe stale=%t behind=%t\n", p.stale, p.behind)
	}
	if a := eff.done; a != nil {
		r := a.receipt
		if a.err != nil {
			fmt.Fprintf(&b, "answer error: %v\n", a.err)
		} else {
			fmt.Fprintf(&b, "answer ok")
			switch {
			case a.scan != nil && (len(a.scan.Records) > 0 || a.scan.More):
				var keys []string
				for _, rec := range a.scan.Records {
					keys = append(keys, fmtRecord(rec))
				}
				fmt.Fprintf(&b, " records=[%s]", strings.Join(keys, " "))
				if a.scan.More {
					fmt.Fprintf(&b, " more next=%q", a.scan.NextStart)
				}
			case a.found && a.record.Tombstone:
				fmt.Fprintf(&b, " not found (newest %s)", fmtRecord(a.record))
			case a.found:
				fmt.Fprintf(&b, " %s", fmtRecord(a.record))
			case h.isRead():
				b.WriteString(" not found")
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "  receipt: r=%d w=%d acked=%d repaired=%d epoch=%d\n", r.Policy.R, r.Policy.W, r.Acked, r.Repaired, r.Epoch)
	}
	if eff.finished {
		b.WriteString("finished\n")
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

func (h *coreHarness) isRead() bool {
	_, ok := h.op.(*readOp)
	return ok
}

func (h *coreHarness) printMetrics() string {
	m := &h.metrics
	var b strings.Builder
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"read-repairs-foreground", m.ReadRepairsForeground.Load()},
		{"read-repairs-background", m.ReadRepairsBackground.Load()},
		{"digest-fetches", m.DigestFetches.Load()},
		{"replica-errors", m.ReplicaErrors.Load()},
		{"epoch-retries", m.EpochRetries.Load()},
		{"hedges", m.Hedges.Load()},
		{"session-skips", m.SessionSkips.Load()},
		{"session-behind", m.SessionBehind.Load()},
	} {
		if c.v != 0 {
			fmt.Fprintf(&b, "%s=%d\n", c.name, c.v)
		}
	}
	if b.Len() == 0 {
		return "(all zero)\n"
	}
	return b.String()
}

// makeReply builds a replica's reply to s from the script's arguments.
func makeReply(s send, args map[string]string, flags []string) (reply, error) {
	r := reply{id: s.id}
	if e, ok := args["err"]; ok {
		r.err = errors.New(e)
		return r, nil
	}
	known := uint64(atoi(orDefault(args["known"], "0")))
	switch s.kind {
	case sendWrite:
		res := &kvpb.MutationResult{Ok: known == 0}
		if known > 0 {
			res.KnownEpoch, res.Error = known, fmt.Sprintf("stale epoch: replica knows %d", known)
		}
		r.write = &kvpb.ReplicaWriteResponse{Results: []*kvpb.MutationResult{res}}
	case sendRead, sendDigest:
		r.read = &kvpb.ReplicaReadResponse{KnownEpoch: known}
		var rec storage.Record
		switch {
		case args["found"] != "":
			v, value, _ := strings.Cut(args["found"], ":")
			rec = storage.Record{Key: s.read.GetKey(), Version: parseVersion(v), Value: []byte(value)}
		case args["tombstone"] != "":
			rec = storage.Record{Key: s.read.GetKey(), Version: parseVersion(args["tombstone"]), Tombstone: true}
		case known > 0 || slices.Contains(flags, "missing"):
		default:
			return r, errors.New("reply to a read needs found=, tombstone=, missing, known= or err=")
		}
		if !rec.Version.IsZero() {
			if s.kind == sendDigest {
				rec.Value = nil
			}
			r.read.Found, r.read.Record = true, RecordToPB(rec)
		}
	case sendScan:
		r.scan = &kvpb.ReplicaScanResponse{KnownEpoch: known}
		for _, kv := range split(args["records"]) {
			k, v, _ := strings.Cut(kv, "@")
			tomb := strings.HasSuffix(v, "~")
			rec := storage.Record{Key: []byte(k), Version: parseVersion(strings.TrimSuffix(v, "~")), Tombstone: tomb}
			if !tomb {
				rec.Value = []byte("v" + k)
			}
			r.scan.Records = append(r.scan.Records, RecordToPB(rec))
		}
	}
	return r, nil
}

// parseVersion reads T or T.n: wall time T in milliseconds, node n.
func parseVersion(s string) storage.Version {
	t, n, _ := strings.Cut(s, ".")
	return storage.Version{Timestamp: uint64(atoi(t)) << 16, Node: uint32(atoi(orDefault(n, "0")))}
}

func fmtRecord(r storage.Record) string {
	v := strconv.FormatUint(r.Version.Timestamp>>16, 10)
	if r.Version.Node != 0 {
		v += "." + strconv.FormatUint(uint64(r.Version.Node), 10)
	}
	switch {
	case r.Tombstone:
		return fmt.Sprintf("%s@%s(tombstone)", r.Key, v)
	case r.Value == nil:
		return fmt.Sprintf("%s@%s", r.Key, v)
	}
	return fmt.Sprintf("%s@%s=%s", r.Key, v, r.Value)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
