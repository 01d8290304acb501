package replication

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrKeyspaceNotFound: the keyspace is not in this node's metadata.
	ErrKeyspaceNotFound = errors.New("replication: keyspace not found")
	// ErrInvalidRequest: the request can never succeed as given (R or W
	// larger than N, a replication factor larger than the cluster, ...).
	ErrInvalidRequest = errors.New("replication: invalid request")
	// ErrNotEnoughReplicas: too few replicas are alive to try the operation;
	// nothing was sent, so nothing was written.
	ErrNotEnoughReplicas = errors.New("replication: not enough replicas alive")
	// ErrQuorumNotReached: replicas were asked but too few answered in time.
	// For a write the outcome is unknown: some replicas may hold it.
	ErrQuorumNotReached = errors.New("replication: quorum not reached")
	// ErrStaleEpoch: a replica knows a newer keyspace configuration than the
	// request carried. The coordinator refreshes and retries; callers see it
	// only when the refresh did not catch up.
	ErrStaleEpoch = errors.New("replication: stale configuration epoch")
	// ErrSessionBehind: a session read (Consistency.MinVersion) found no
	// replica in reach holding the session's version of the key or a newer
	// one. Nothing older was returned.
	ErrSessionBehind = errors.New("replication: no replica in reach is as new as the session")
	// ErrContended: a conditional or linearizable write lost every Paxos
	// round it tried to concurrent rounds on the key until its attempts
	// ran out. Nothing of the operation's was written: safe to retry.
	ErrContended = errors.New("replication: too much contention on the key")
	// ErrUnknownOutcome: a conditional or linearizable write's own
	// proposal went out and was neither chosen nor refused by every
	// replica, so a later round may still complete it. Not safe to retry
	// blindly: the condition checked again could apply the write twice.
	ErrUnknownOutcome = errors.New("replication: outcome unknown")
	// ErrNotPosted: a PaxosPoster did not take the message; send it with
	// Transport.Paxos.
	ErrNotPosted = errors.New("replication: message not posted")
)

// QuorumError reports how many replicas answered and how many were needed.
// It wraps ErrNotEnoughReplicas or ErrQuorumNotReached.
type QuorumError struct {
	Op       string // "read", "write" or "scan"
	Answered int    // replicas alive (ErrNotEnoughReplicas) or that acknowledged
	Required int
	Err      error
	// Detail, when set, says more (which replica, and why it mattered).
	Detail string
}

func (e *QuorumError) Error() string {
	var msg string
	if errors.Is(e.Err, ErrNotEnoughReplicas) {
		msg = fmt.Sprintf("%s: not enough replicas alive: %d alive, %d required", e.Op, e.Answered, e.Required)
	} else {
		msg = fmt.Sprintf("%s: quorum not reached: %d of %d required replicas answered", e.Op, e.Answered, e.Required)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *QuorumError) Unwrap() error { return e.Err }

// EpochError is a replica's refusal of a request made under an older epoch.
type EpochError struct {
	Keyspace  string
	Requested uint64
	Known     uint64
}

func (e *EpochError) Error() string {
	return fmt.Sprintf("keyspace %q: request epoch %d is older than the replica's epoch %d", e.Keyspace, e.Requested, e.Known)
}

func (e *EpochError) Unwrap() error { return ErrStaleEpoch }
