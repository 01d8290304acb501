package node

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/adaptkv/adaptkv/api/ring"
)

// Topology on the metadata log.
//
// Who owns which ranges is metadata, like a keyspace: it changes only
// through entries of the metadata log ("topo-init", "topo-join",
// "topo-normal", "topo-leave", "topo-remove", "topo-left", "topo-replace",
// "topo-replaced"), and the index of the last such entry is the topology
// epoch. Gossip is the failure detector only: a member gossip sees is not on
// the ring until the log says so, and a member gossip reports dead keeps its
// place (its writes become hints).
//
// A member is joining, normal, leaving or left. The ring that places keys
// (the current owners) holds the normal and leaving members; while a member
// joins, a second ring (the future owners: normal and joining) says which
// replicas a key will gain, and coordinators write to those as pending
// replicas (replication's opPlan.pendingAlive/pendingDead): sent every
// write, never counted towards W, and required for the acknowledgement.
// Reads use the current owners only. Once the joining member has the data
// of its ranges, one "topo-normal" entry moves reads and writes to the new
// ring.
//
// A decommission is the same two steps the other way: "topo-leave" makes a
// normal member leaving, which keeps it on the current ring and leaves it
// off the future one, so the members that take over its ranges become
// pending replicas exactly as a joining member is; once its ranges are
// streamed to them, "topo-left" takes it off the ring. The argument below
// holds with x the leaving member and j each key's new replica.
//
// Why R + W > N holds across the switch, for a key whose replicas go from
// S to S' = S - {x} + {j}: a write acknowledged before the join entry was in
// force everywhere is on W members of S, each of which stored it before it
// applied the join entry (a replica that has applied it refuses a request
// at an older epoch, because the topology epoch is part of every keyspace's
// epoch, see fsm.Keyspace), so the stream, which starts only once every
// member has applied the join entry, finds it on them and copies it to j.
// A write acknowledged under the join entry is on W members of S and on j.
// Either way it is on at least W-1 members of S - {x} and on j: W members
// of S'. Reads at R on S' therefore meet it. A coordinator still on the
// join epoch after the switch writes to S and j, which is again W of S',
// until a replica that has applied the switch refuses it.
//
// A removal ("topo-remove", for a member that will never return) is a
// decommission whose leaving member is dead: the member becomes removing,
// which places it as leaving does (on the current ring, off the future
// one), and the stream reads the survivors, S - {x}, only. What that keeps
// is weaker, and exact: a write acknowledged at W is on W members of S, so
// on at least W-1 survivors; the stream copies it from them to j (and to
// any survivor that lacked it), so once x is left it is on W members of S'
// if W >= 2, and R + W > N holds again. At quorum with N = 3 an
// acknowledged write is on 2 replicas, so on at least 1 survivor. A write
// acknowledged at W = 1 by x alone is lost with x; no stream can find it.
// Writes during the removal go to S and j as during a decommission; x's
// share becomes hints, dropped when it is left. A removal of a joining
// member (dead before its join finished) takes it straight to left: it is
// on no current ring, so nothing needs streaming; a removal of a leaving
// member (dead during its decommission) makes it removing.
//
// A replacement ("topo-replace", `adaptkv node --replace DEAD`) is a
// removal and a join in one entry: the dead member becomes removing and the
// new one joining, so the current ring is unchanged (the dead member keeps
// its place; its share of writes becomes hints) and the future ring is the
// current one minus the dead member plus the new one. The stream reads the
// survivors only, as a removal's does, and pushes to every future replica;
// then one "topo-replaced" entry makes the new member normal and the dead
// one left. The argument is the removal's with j the new member: an
// acknowledged write is on at least W-1 survivors, the stream copies it to
// the new member and to any survivor that lacked it, so once the change is
// done it is on W members of S' if W >= 2. Ring tokens are hashes of member
// IDs, so the new member does not inherit the dead member's tokens: its
// ranges are its own, and the survivors' ranges shift too (the dead
// member's ranges go to their successors, the new member takes ranges from
// everyone). That streams more than a token-for-token replacement would,
// and cleanup deletes what moved; correctness does not depend on it.
//
// The stream (stream.go) is paced and checkpointed in the metadata log, and
// a driver that takes a change up resumes from the checkpoint. That keeps
// the argument: a checkpoint names only pages every new replica
// acknowledged, read after every member had applied the change's entry, so
// what a resumed stream skips was copied already, and every later write to
// those keys went to the new replicas as pending replicas. The entry that
// ends the change is proposed only after a stream has finished every
// keyspace, and cleanup is refused while a change is in progress.
//
// One change at a time: the log refuses a join or a leave while another
// member is joining or leaving, so that there are never more than two
// rings.

// MemberState is a ring member's state in the metadata log.
type MemberState string

// The member states.
const (
	// StateJoining: placed on the future ring only; receives writes as a
	// pending replica while its ranges are streamed to it.
	StateJoining MemberState = "joining"
	// StateNormal: owns its ranges.
	StateNormal MemberState = "normal"
	// StateLeaving: still owns its ranges while they stream to the members
	// that will own them once it has left.
	StateLeaving MemberState = "leaving"
	// StateRemoving: a dead member being removed; placed as leaving is,
	// but its ranges stream from the surviving replicas.
	StateRemoving MemberState = "removing"
	// StateLeft: off the ring.
	StateLeft MemberState = "left"
)

// ErrTopologyChange refuses a topology entry that does not follow from the
// topology in force (a second change while one is in progress, a join of a
// member already on the ring, ...).
var ErrTopologyChange = errors.New("node: topology change refused")

// TopologyMember is one member of the ring as the metadata log records it.
type TopologyMember struct {
	ID    string      `json:"id"`
	Zone  string      `json:"zone,omitempty"`
	State MemberState `json:"state"`
	// Since is the index of the entry that set State.
	Since uint64 `json:"since"`
}

// Topology is the ring membership in force: every member the log has
// placed, sorted by ID, and the index of the last entry that changed it.
type Topology struct {
	Members []TopologyMember `json:"members"`
	Epoch   uint64           `json:"epoch"`
}

// Member returns the member with id.
func (t Topology) Member(id string) (TopologyMember, bool) {
	i := sort.Search(len(t.Members), func(i int) bool { return t.Members[i].ID >= id })
	if i < len(t.Members) && t.Members[i].ID == id {
		return t.Members[i], true
	}
	return TopologyMember{}, false
}

// Changing returns the member that is joining, leaving or being removed,
// if any.
func (t Topology) Changing() (TopologyMember, bool) {
	for _, m := range t.Members {
		if m.State == StateJoining || m.State == StateLeaving || m.State == StateRemoving {
			return m, true
		}
	}
	return TopologyMember{}, false
}

// normal is the number of normal members.
func (t Topology) normal() int {
	c := 0
	for _, m := range t.Members {
		if m.State == StateNormal {
			c++
		}
	}
	return c
}

// topoState is a Topology with its rings built once, when it changes, so
// that the data path only loads a pointer.
type topoState struct {
	Topology
	// current places keys (normal and leaving members); nil before the
	// first topology entry.
	current *ring.Ring
	// future is the ring once the change in progress is done; nil when no
	// change is in progress.
	future *ring.Ring
}

func newTopoState(t Topology, vnodes int) *topoState {
	s := &topoState{Topology: t}
	if len(t.Members) == 0 {
		return s
	}
	var cur, fut []ring.Member
	changing := false
	for _, m := range t.Members {
		rm := ring.Member{ID: m.ID, Zone: m.Zone}
		switch m.State {
		case StateNormal:
			cur, fut = append(cur, rm), append(fut, rm)
		case StateLeaving, StateRemoving:
			cur = append(cur, rm)
			changing = true
		case StateJoining:
			fut = append(fut, rm)
			changing = true
		}
	}
	s.current = ring.New(cur, vnodes)
	if changing {
		s.future = ring.New(fut, vnodes)
	}
	return s
}

// applyTopology applies a topology entry at index; it returns the new
// topology or why the entry was refused. Pure: the state machine's only
// input is the log.
func applyTopology(cur Topology, op string, members []TopologyMember, index uint64) (Topology, error) {
	next := Topology{Members: slices.Clone(cur.Members), Epoch: index}
	set := func(m TopologyMember) {
		m.Since = index
		i := sort.Search(len(next.Members), func(i int) bool { return next.Members[i].ID >= m.ID })
		if i < len(next.Members) && next.Members[i].ID == m.ID {
			next.Members[i] = m
			return
		}
		next.Members = slices.Insert(next.Members, i, m)
	}
	switch op {
	case "topo-init":
		// The first leader places the members it found (a new cluster's
		// bootstrap members, or, on upgrade, the members that already
		// owned ranges by gossip) as normal. Only once.
		if len(cur.Members) > 0 {
			return cur, fmt.Errorf("%w: the ring is already initialised (epoch %d)", ErrTopologyChange, cur.Epoch)
		}
		if len(members) == 0 {
			return cur, fmt.Errorf("%w: an initial ring needs members", ErrTopologyChange)
		}
		for _, m := range members {
			m.State = StateNormal
			set(m)
		}
		return next, nil
	case "topo-replace", "topo-replaced":
		if err := applyReplace(cur, op, members, set); err != nil {
			return cur, err
		}
		return next, nil
	case "topo-join", "topo-normal", "topo-leave", "topo-remove", "topo-left":
	default:
		return cur, fmt.Errorf("%w: unknown op %q", ErrTopologyChange, op)
	}
	if len(members) != 1 || members[0].ID == "" {
		return cur, fmt.Errorf("%w: %s names exactly one member", ErrTopologyChange, op)
	}
	m := members[0]
	old, exists := cur.Member(m.ID)
	if len(cur.Members) == 0 {
		return cur, fmt.Errorf("%w: the ring is not initialised", ErrTopologyChange)
	}
	switch op {
	case "topo-join":
		if exists && old.State != StateLeft {
			return cur, fmt.Errorf("%w: %s is already %s", ErrTopologyChange, m.ID, old.State)
		}
		if c, ok := cur.Changing(); ok {
			return cur, fmt.Errorf("%w: %s is %s; one change at a time", ErrTopologyChange, c.ID, c.State)
		}
		m.State = StateJoining
	case "topo-normal":
		if !exists || old.State != StateJoining {
			return cur, fmt.Errorf("%w: %s is not joining", ErrTopologyChange, m.ID)
		}
		m = old
		m.State = StateNormal
	case "topo-leave":
		if !exists || old.State != StateNormal {
			return cur, fmt.Errorf("%w: %s is not a normal member", ErrTopologyChange, m.ID)
		}
		if c, ok := cur.Changing(); ok {
			return cur, fmt.Errorf("%w: %s is %s; one change at a time", ErrTopologyChange, c.ID, c.State)
		}
		if cur.normal() < 2 {
			return cur, fmt.Errorf("%w: %s is the last normal member", ErrTopologyChange, m.ID)
		}
		m = old
		m.State = StateLeaving
	case "topo-remove":
		if !exists {
			return cur, fmt.Errorf("%w: %s is not on the ring", ErrTopologyChange, m.ID)
		}
		switch old.State {
		case StateNormal:
			if c, ok := cur.Changing(); ok {
				return cur, fmt.Errorf("%w: %s is %s; one change at a time", ErrTopologyChange, c.ID, c.State)
			}
			if cur.normal() < 2 {
				return cur, fmt.Errorf("%w: %s is the last normal member", ErrTopologyChange, m.ID)
			}
			m = old
			m.State = StateRemoving
		case StateLeaving:
			m = old
			m.State = StateRemoving
		case StateJoining:
			m = old
			m.State = StateLeft
		default:
			return cur, fmt.Errorf("%w: %s is %s", ErrTopologyChange, m.ID, old.State)
		}
	case "topo-left":
		if !exists || (old.State != StateLeaving && old.State != StateRemoving) {
			return cur, fmt.Errorf("%w: %s is not leaving", ErrTopologyChange, m.ID)
		}
		m = old
		m.State = StateLeft
	}
	set(m)
	return next, nil
}

// applyReplace applies "topo-replace" (members: the dead one, then the new
// one) and "topo-replaced" (the same two) to cur through set, or says why
// not.
func applyReplace(cur Topology, op string, members []TopologyMember, set func(TopologyMember)) error {
	if len(members) != 2 || members[0].ID == "" || members[1].ID == "" || members[0].ID == members[1].ID {
		return fmt.Errorf("%w: %s names the dead member and its distinct replacement", ErrTopologyChange, op)
	}
	if len(cur.Members) == 0 {
		return fmt.Errorf("%w: the ring is not initialised", ErrTopologyChange)
	}
	dead, nu := members[0], members[1]
	oldDead, deadOK := cur.Member(dead.ID)
	oldNew, newOK := cur.Member(nu.ID)
	if op == "topo-replace" {
		if !deadOK {
			return fmt.Errorf("%w: %s is not on the ring", ErrTopologyChange, dead.ID)
		}
		if oldDead.State != StateNormal {
			return fmt.Errorf("%w: %s is %s, not normal", ErrTopologyChange, dead.ID, oldDead.State)
		}
		if newOK && oldNew.State != StateLeft {
			return fmt.Errorf("%w: %s is already %s", ErrTopologyChange, nu.ID, oldNew.State)
		}
		if c, ok := cur.Changing(); ok {
			return fmt.Errorf("%w: %s is %s; one change at a time", ErrTopologyChange, c.ID, c.State)
		}
		oldDead.State = StateRemoving
		nu.State = StateJoining
		set(oldDead)
		set(nu)
		return nil
	}
	if !deadOK || oldDead.State != StateRemoving || !newOK || oldNew.State != StateJoining {
		return fmt.Errorf("%w: %s is not replacing %s", ErrTopologyChange, nu.ID, dead.ID)
	}
	oldDead.State, oldNew.State = StateLeft, StateNormal
	set(oldDead)
	set(oldNew)
	return nil
}

// replacing returns the dead member and its replacement when the change in
// progress is a replacement (one member removing and one joining).
func (t Topology) replacing() (dead, nu TopologyMember, ok bool) {
	var d, j bool
	for _, m := range t.Members {
		switch m.State {
		case StateRemoving:
			dead, d = m, true
		case StateJoining:
			nu, j = m, true
		}
	}
	return dead, nu, d && j
}

// ringStateOf is a member's state in t; empty when t has not placed it.
func ringStateOf(t Topology, id string) MemberState {
	m, _ := t.Member(id)
	return m.State
}

// Topology returns the ring membership in force.
func (f *fsm) Topology() Topology { return f.topo.Load().Topology }

// ring returns the ring that places keys, nil before the first topology
// entry.
func (f *fsm) ring() *ring.Ring { return f.topo.Load().current }

// futureRing returns the ring the change in progress leads to, nil when no
// change is in progress.
func (f *fsm) futureRing() *ring.Ring { return f.topo.Load().future }
