package checker

import (
	"sort"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// hb builds small histories by hand: each call adds an invocation and its
// completion at the given times (milliseconds), and build sorts them into a
// timeline.
type hb struct {
	ops []history.Op
}

const msNs = int64(1e6)

type opt func(inv, comp *history.Op)

func level(l string, r, n int) opt {
	return func(inv, comp *history.Op) { inv.Level, comp.Level, comp.Required, comp.N = l, l, r, n }
}

func client(c int) opt { return func(inv, comp *history.Op) { inv.Client, comp.Client = c, c } }

func via(node string) opt { return func(inv, comp *history.Op) { comp.Node = node } }

func phase(ph string) opt { return func(inv, comp *history.Op) { inv.Phase, comp.Phase = ph, ph } }

func (b *hb) add(p int, f, key string, val *int64, call, ret int64, typ history.Type, result *int64, ver uint64, opts ...opt) {
	inv := history.Op{Process: p, Client: p, Type: history.Invoke, F: f, Key: key, Time: call * msNs, Level: "quorum", Phase: history.PhaseFaults}
	if f != history.FRead {
		inv.Value = val
	}
	comp := inv
	comp.Type = typ
	comp.Time = ret * msNs
	if typ == history.OK && f == history.FRead {
		comp.Value = result
		if result != nil {
			comp.Version = &history.Version{Timestamp: ver}
		}
	}
	if typ == history.OK && f != history.FRead {
		comp.Version = &history.Version{Timestamp: ver}
	}
	if typ != history.OK {
		comp.Error = "boom"
	}
	for _, o := range opts {
		o(&inv, &comp)
	}
	b.ops = append(b.ops, inv)
	if ret >= 0 {
		b.ops = append(b.ops, comp)
	}
}

// w adds a write of v to key by process p over [call, ret] with the given
// completion and (for ok) version.
func (b *hb) w(p int, key string, v int64, call, ret int64, typ history.Type, ver uint64, opts ...opt) {
	b.add(p, history.FWrite, key, history.Int(v), call, ret, typ, nil, ver, opts...)
}

// r adds an ok read of key returning got (0: not found) with version ver.
func (b *hb) r(p int, key string, got int64, call, ret int64, ver uint64, opts ...opt) {
	var res *int64
	if got != 0 {
		res = history.Int(got)
	}
	b.add(p, history.FRead, key, nil, call, ret, history.OK, res, ver, opts...)
}

func (b *hb) fault(kind string, start, end int64) {
	b.ops = append(b.ops,
		history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start-" + kind, Time: start * msNs, Fault: &history.Fault{Kind: kind}},
		history.Op{Process: history.NemesisProcess, Type: history.Info, F: "stop-" + kind, Time: end * msNs, Fault: &history.Fault{Kind: kind}})
}

func (b *hb) build() []history.Op {
	ops := append([]history.Op(nil), b.ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Time < ops[j].Time })
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}
