package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/storage"
)

// The log decides ring membership from its own entries: one change at a
// time, joining before normal, and the rings follow the states.
func TestApplyTopology(t *testing.T) {
	m := func(id string) TopologyMember { return TopologyMember{ID: id} }
	type step struct {
		op string
		ms []TopologyMember
	}
	tests := []struct {
		name      string
		steps     []step
		wantErr   bool // of the last step
		wantCur   int  // members of the current ring after the steps
		wantFut   int  // of the future ring, 0 when none
		wantState MemberState
	}{
		{"init", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}}, false, 3, 0, StateNormal},
		{"init twice refused", []step{{"topo-init", []TopologyMember{m("a")}}, {"topo-init", []TopologyMember{m("b")}}}, true, 1, 0, ""},
		{"join before init refused", []step{{"topo-join", []TopologyMember{m("d")}}}, true, 0, 0, ""},
		{"join", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}}, false, 3, 4, StateJoining},
		{"second join refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-join", []TopologyMember{m("e")}}}, true, 3, 4, ""},
		{"join a member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("a")}}}, true, 3, 0, StateNormal},
		{"normal", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-normal", []TopologyMember{m("d")}}}, false, 4, 0, StateNormal},
		{"normal without join refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-normal", []TopologyMember{m("d")}}}, true, 3, 0, ""},
		{"leave", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("c")}}}, false, 3, 2, StateLeaving},
		{"left", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("c")}}, {"topo-left", []TopologyMember{m("c")}}}, false, 2, 0, StateLeft},
		{"leave during a join refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-leave", []TopologyMember{m("a")}}}, true, 3, 4, StateNormal},
		{"join during a leave refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("a")}}, {"topo-join", []TopologyMember{m("d")}}}, true, 3, 2, ""},
		{"second leave refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("a")}}, {"topo-leave", []TopologyMember{m("b")}}}, true, 3, 2, StateNormal},
		{"leave of a joining member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-leave", []TopologyMember{m("d")}}}, true, 3, 4, StateJoining},
		{"leave of an unknown member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-leave", []TopologyMember{m("z")}}}, true, 2, 0, ""},
		{"leave of the last member refused", []step{{"topo-init", []TopologyMember{m("a")}}, {"topo-leave", []TopologyMember{m("a")}}}, true, 1, 0, StateNormal},
		{"left without leave refused", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-left", []TopologyMember{m("b")}}}, true, 2, 0, StateNormal},
		{"left member joins again", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("c")}}, {"topo-left", []TopologyMember{m("c")}}, {"topo-join", []TopologyMember{m("c")}}}, false, 2, 3, StateJoining},
		{"remove", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-remove", []TopologyMember{m("c")}}}, false, 3, 2, StateRemoving},
		{"removed member left", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-remove", []TopologyMember{m("c")}}, {"topo-left", []TopologyMember{m("c")}}}, false, 2, 0, StateLeft},
		{"remove of a leaving member", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("c")}}, {"topo-remove", []TopologyMember{m("c")}}}, false, 3, 2, StateRemoving},
		{"remove of a joining member takes it off", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-remove", []TopologyMember{m("d")}}}, false, 3, 0, StateLeft},
		{"remove during a join refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-remove", []TopologyMember{m("a")}}}, true, 3, 4, StateNormal},
		{"join during a removal refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-remove", []TopologyMember{m("a")}}, {"topo-join", []TopologyMember{m("d")}}}, true, 3, 2, ""},
		{"remove of an unknown member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-remove", []TopologyMember{m("z")}}}, true, 2, 0, ""},
		{"remove of the last member refused", []step{{"topo-init", []TopologyMember{m("a")}}, {"topo-remove", []TopologyMember{m("a")}}}, true, 1, 0, StateNormal},
		{"remove of a left member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-remove", []TopologyMember{m("c")}}, {"topo-left", []TopologyMember{m("c")}}, {"topo-remove", []TopologyMember{m("c")}}}, true, 2, 0, StateLeft},
		{"replace", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c"), m("d")}}, {"topo-replace", []TopologyMember{m("d"), m("e")}}}, false, 4, 4, StateRemoving},
		{"replaced", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c"), m("d")}}, {"topo-replace", []TopologyMember{m("d"), m("e")}}, {"topo-replaced", []TopologyMember{m("d"), m("e")}}}, false, 4, 0, StateLeft},
		{"replacement normal", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c"), m("d")}}, {"topo-replace", []TopologyMember{m("d"), m("e")}}, {"topo-replaced", []TopologyMember{m("d"), m("e")}}, {"topo-leave", []TopologyMember{m("e")}}}, false, 4, 3, StateLeaving},
		{"replace names two members", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-replace", []TopologyMember{m("b")}}}, true, 2, 0, StateNormal},
		{"replace by itself refused", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-replace", []TopologyMember{m("b"), m("b")}}}, true, 2, 0, StateNormal},
		{"replace of an unknown member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b")}}, {"topo-replace", []TopologyMember{m("z"), m("e")}}}, true, 2, 0, ""},
		{"replace by a member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-replace", []TopologyMember{m("c"), m("a")}}}, true, 3, 0, StateNormal},
		{"replace during a join refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-replace", []TopologyMember{m("a"), m("e")}}}, true, 3, 4, StateNormal},
		{"replace of a leaving member refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-leave", []TopologyMember{m("c")}}, {"topo-replace", []TopologyMember{m("c"), m("e")}}}, true, 3, 2, StateLeaving},
		{"join during a replace refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-replace", []TopologyMember{m("c"), m("e")}}, {"topo-join", []TopologyMember{m("f")}}}, true, 3, 3, ""},
		{"replaced without replace refused", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-replaced", []TopologyMember{m("c"), m("e")}}}, true, 3, 0, StateNormal},
		{"replacement dies: removed, replace goes on as a removal", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c"), m("d")}}, {"topo-replace", []TopologyMember{m("d"), m("e")}}, {"topo-remove", []TopologyMember{m("e")}}}, false, 4, 3, StateLeft},
		{"join then next join", []step{{"topo-init", []TopologyMember{m("a"), m("b"), m("c")}}, {"topo-join", []TopologyMember{m("d")}}, {"topo-normal", []TopologyMember{m("d")}}, {"topo-join", []TopologyMember{m("e")}}}, false, 4, 5, StateJoining},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFSM()
			var res applyResult
			for i, s := range tt.steps {
				res = applyCmd(t, f, uint64(i+1), command{Op: s.op, Members: s.ms})
				if i < len(tt.steps)-1 && res.err != nil {
					t.Fatalf("step %d: %v", i+1, res.err)
				}
			}
			if gotErr := res.err != nil; gotErr != tt.wantErr {
				t.Fatalf("err = %v, want error %v", res.err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(res.err, ErrTopologyChange) {
				t.Fatalf("err = %v, want ErrTopologyChange", res.err)
			}
			gotCur := 0
			if r := f.ring(); r != nil {
				gotCur = r.Len()
			}
			if gotCur != tt.wantCur {
				t.Errorf("current ring has %d members, want %d", gotCur, tt.wantCur)
			}
			gotFut := 0
			if r := f.futureRing(); r != nil {
				gotFut = r.Len()
			}
			if gotFut != tt.wantFut {
				t.Errorf("future ring has %d members, want %d", gotFut, tt.wantFut)
			}
			last := tt.steps[len(tt.steps)-1].ms[0].ID
			got, _ := f.Topology().Member(last)
			if got.State != tt.wantState {
				t.Errorf("%s is %q, want %q", last, got.State, tt.wantState)
			}
			if !tt.wantErr && f.Topology().Epoch != uint64(len(tt.steps)) {
				t.Errorf("topology epoch %d, want %d (the last entry's index)", f.Topology().Epoch, len(tt.steps))
			}
		})
	}
}

// The topology epoch is part of every keyspace's epoch, so that replicas
// refuse coordinators placing keys on an older ring.
func TestTopologyEpochInKeyspaceEpoch(t *testing.T) {
	f := newFSM()
	applyCmd(t, f, 1, command{Op: "topo-init", Members: []TopologyMember{{ID: "a"}}})
	applyCmd(t, f, 2, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 1, Level: "quorum"}})
	if ks, _ := f.Keyspace("ks"); ks.Epoch != 2 {
		t.Fatalf("epoch %d, want 2", ks.Epoch)
	}
	applyCmd(t, f, 3, command{Op: "topo-join", Members: []TopologyMember{{ID: "b"}}})
	if ks, _ := f.Keyspace("ks"); ks.Epoch != 3 {
		t.Fatalf("epoch %d after a join at index 3, want 3", ks.Epoch)
	}
	// A snapshot carries the topology.
	snap, _ := f.Snapshot()
	g := newFSM()
	restoreFrom(t, g, snap)
	if m, ok := g.Topology().Member("b"); !ok || m.State != StateJoining || g.futureRing() == nil {
		t.Fatalf("restored topology %+v", g.Topology())
	}
}

func restoreFrom(t *testing.T, f *fsm, snap raft.FSMSnapshot) {
	t.Helper()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
}

// A replica that has applied a topology change refuses a write placed on
// the ring before it, naming the epoch it knows, so that the coordinator
// catches up and places the write again (with the joining member pending).
func TestReplicaRefusesOlderTopologyEpoch(t *testing.T) {
	f := newFSM()
	applyCmd(t, f, 1, command{Op: "topo-init", Members: []TopologyMember{{ID: "a"}, {ID: "b"}, {ID: "c"}}})
	applyCmd(t, f, 2, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "quorum"}})
	applyCmd(t, f, 3, command{Op: "topo-join", Members: []TopologyMember{{ID: "d"}}})
	r := replication.NewReplica(storage.NewMemory(), f, replication.NewClock(nil))
	rec := &kvpb.Record{Key: []byte("k"), Value: []byte("v"), Version: &kvpb.Version{Timestamp: 1, Node: 1}}
	tests := []struct {
		epoch     uint64
		wantOK    bool
		wantKnown uint64
	}{
		{2, false, 3}, // placed before the join
		{3, true, 0},
	}
	for _, tt := range tests {
		resp, err := r.Write(context.Background(), &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Keyspace: "ks", Epoch: tt.epoch, Record: rec}}})
		if err != nil {
			t.Fatal(err)
		}
		res := resp.GetResults()[0]
		if res.GetOk() != tt.wantOK || res.GetKnownEpoch() != tt.wantKnown {
			t.Errorf("write at epoch %d: ok=%v known=%d, want ok=%v known=%d", tt.epoch, res.GetOk(), res.GetKnownEpoch(), tt.wantOK, tt.wantKnown)
		}
	}
}
