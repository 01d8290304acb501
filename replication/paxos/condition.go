package paxos

import (
	"bytes"
	"fmt"

	"github.com/adaptkv/adaptkv/storage"
)

// ConditionKind says what a Condition compares.
type ConditionKind uint8

const (
	// Always holds: a linearizable plain put or delete.
	Always ConditionKind = iota
	// IfVersion holds when the key's live record has exactly Version.
	IfVersion
	// IfAbsent holds when the key has no live record (never written, or
	// deleted).
	IfAbsent
	// IfValue holds when the key's live record has exactly Value.
	IfValue
	// ReadOnly never writes: the operation is a Paxos read, which completes
	// any proposal in progress and answers the current record (Outcome with
	// Applied false). It is how a linearizable read that found a proposal
	// in progress finishes (see Reader).
	ReadOnly
)

// Condition is what a conditional write requires of the key's current
// record. A tombstone counts as absent: IfVersion and IfValue never hold
// for a deleted key.
type Condition struct {
	Kind    ConditionKind
	Version storage.Version // IfVersion
	Value   []byte          // IfValue
}

// Holds reports whether c holds for the current record rec (found: the key
// has a stored record, possibly a tombstone).
func (c Condition) Holds(rec storage.Record, found bool) bool {
	live := found && !rec.Tombstone
	switch c.Kind {
	case Always:
		return true
	case IfVersion:
		return live && rec.Version == c.Version
	case IfAbsent:
		return !live
	case IfValue:
		return live && bytes.Equal(rec.Value, c.Value)
	}
	return false
}

// String formats c the way the tests write it.
func (c Condition) String() string {
	switch c.Kind {
	case Always:
		return "always"
	case IfVersion:
		return fmt.Sprintf("if-version=%d.%d", c.Version.Timestamp, c.Version.Node)
	case IfAbsent:
		return "if-absent"
	case IfValue:
		return fmt.Sprintf("if-value=%s", c.Value)
	case ReadOnly:
		return "read"
	}
	return fmt.Sprintf("ConditionKind(%d)", c.Kind)
}
