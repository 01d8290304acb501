package api

import (
	"fmt"
	"strings"
)

// Level is a named consistency level: how many of a key's N replicas answer
// a read (R) and acknowledge a write (W). Its values are those of the
// protobuf enum kvpb.Level, so kvpb.Level(l) and Level(pb) convert between
// the two (TestLevelsMatchProto keeps them in step); api itself does not
// import the generated code, so the pure packages that name levels
// (replication/quorum, tuner) stay free of protobuf and gRPC.
//
// replication/quorum.Level and client.Level are aliases of Level.
type Level int32

const (
	// LevelDefault uses the keyspace's default level (LEVEL_UNSPECIFIED).
	LevelDefault Level = 0
	// LevelOne waits for one replica: R = W = 1.
	LevelOne Level = 1
	// LevelQuorum waits for a majority on both paths, R = W = ⌊N/2⌋+1, so
	// R + W > N.
	LevelQuorum Level = 2
	// LevelAll waits for every replica: R = W = N.
	LevelAll Level = 3
	// LevelCustom takes R and W as given (kvpb.Consistency's r and w).
	LevelCustom Level = 4
	// LevelLinearizable makes every read and write of the key linearizable,
	// whatever the clocks say: writes go through single-decree Paxos on the
	// key's replicas, reads ask a majority and write back or escalate to a
	// Paxos read (replication/paxos). Both need a majority, ⌊N/2⌋+1.
	LevelLinearizable Level = 5
)

// AdaptiveName is how the CLI, the Jepsen harness and the status pages name
// the consistency of an adaptive keyspace. It is not a Level: such a
// keyspace states a goal (kvpb.AdaptiveGoal) and the tuner keeps its default
// level at LevelCustom with the R and W it chose, so a call that wants the
// tuner's choice asks for LevelDefault.
const AdaptiveName = "adaptive"

// levelNames are the names the CLI, the metadata log, the metrics labels and
// Policy strings use; the protobuf enum names are these upper-cased with a
// LEVEL_ prefix (LEVEL_UNSPECIFIED for "default").
var levelNames = [...]string{
	LevelDefault:      "default",
	LevelOne:          "one",
	LevelQuorum:       "quorum",
	LevelAll:          "all",
	LevelCustom:       "custom",
	LevelLinearizable: "linearizable",
}

// Levels returns every level, LevelDefault first, in the order of their
// values.
func Levels() []Level {
	return []Level{LevelDefault, LevelOne, LevelQuorum, LevelAll, LevelCustom, LevelLinearizable}
}

// Known reports whether l is one of the declared levels.
func (l Level) Known() bool { return l >= 0 && int(l) < len(levelNames) }

// String returns the level's lower-case name as the CLI and the API spell
// it ("one", "quorum", ...), or "level(7)" for an unknown value.
func (l Level) String() string {
	if l.Known() {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ParseLevel returns the level a name denotes, ignoring case: "one",
// "quorum", "all", "custom", "linearizable", and "default" or the empty
// string for LevelDefault. ok is false for any other name, AdaptiveName
// included.
// Callers that take R and W apart from the name (the CLI's --r and --w)
// refuse LevelCustom themselves.
func ParseLevel(name string) (l Level, ok bool) {
	if name == "" {
		return LevelDefault, true
	}
	for i, n := range levelNames {
		if strings.EqualFold(name, n) {
			return Level(i), true
		}
	}
	return LevelDefault, false
}

// ErrorDomain is the google.rpc.ErrorInfo domain of every adaptkv error
// status. Details from other domains are ignored, since their reasons mean
// something else.
const ErrorDomain = "adaptkv"

// Reasons: the google.rpc.ErrorInfo reason of an error status names the
// problem with a stable word, so that clients branch on it rather than on
// message text. Each is sent with one gRPC code, given in parentheses.
// "Definite" means the server did nothing, so even a write may be sent
// again; otherwise a write's outcome is unknown unless its code says
// otherwise.
const (
	// ReasonInvalidArgument (InvalidArgument): the request can never succeed
	// as given: a bad key or keyspace name, R or W outside 1..N, a value over
	// a size limit. The message names the problem. Definite.
	ReasonInvalidArgument = "INVALID_ARGUMENT"
	// ReasonKeyspaceNotFound (NotFound): the keyspace is not in the
	// metadata log. Definite.
	ReasonKeyspaceNotFound = "KEYSPACE_NOT_FOUND"
	// ReasonKeyspaceExists (AlreadyExists): CreateKeyspace named a keyspace
	// that exists. Definite.
	ReasonKeyspaceExists = "KEYSPACE_EXISTS"
	// ReasonNotEnoughReplicas (Unavailable): too few replicas were alive to
	// try the operation, or the node has not joined the cluster yet, so
	// nothing was sent. Definite. Metadata: MetaAlive, MetaRequired.
	ReasonNotEnoughReplicas = "NOT_ENOUGH_REPLICAS"
	// ReasonQuorumNotReached (Unavailable): replicas were asked but fewer
	// than R or W answered in time; some may hold a write, so its outcome
	// is unknown. Metadata: MetaAcked, MetaRequired.
	ReasonQuorumNotReached = "QUORUM_NOT_REACHED"
	// ReasonNoMetadataLeader (FailedPrecondition): the metadata Raft group
	// has no leader, so a keyspace change cannot be committed now; an
	// election takes a moment, so it is worth retrying. Nothing was
	// committed, except when the leader lost its leadership after proposing
	// the change (raft.ErrLeadershipLost), which may still commit it.
	ReasonNoMetadataLeader = "NO_METADATA_LEADER"
	// ReasonStaleEpoch (Unavailable): a replica knew a newer keyspace
	// configuration and the coordinator could not catch up in time. A write
	// that got it may have been stored by other replicas: outcome unknown.
	ReasonStaleEpoch = "STALE_EPOCH"
	// ReasonNodeNotFound (NotFound): no member has the given node ID.
	// Definite.
	ReasonNodeNotFound = "NODE_NOT_FOUND"
	// ReasonConfigUnconfirmed (Unavailable): the node holds no
	// configuration lease for a fenced keyspace (adaptive with a quorum
	// floor), so it cannot confirm it has the keyspace's current
	// configuration, and sent nothing. Definite; another node may serve it.
	ReasonConfigUnconfirmed = "CONFIG_UNCONFIRMED"
	// ReasonConfigLeaseLost (Unavailable): the node's configuration lease
	// ended while the operation was under way; a write's outcome is unknown.
	ReasonConfigLeaseLost = "CONFIG_LEASE_LOST"
	// ReasonNodeNotReady (Unavailable): the node cannot coordinate writes
	// yet, because the metadata log has not assigned it a node number.
	// Definite: nothing was sent.
	ReasonNodeNotReady = "NODE_NOT_READY"
	// ReasonOverloaded (ResourceExhausted): the node had as many client
	// requests in flight as it admits and refused this one before doing
	// anything. Definite. The status carries a google.rpc.RetryInfo hint;
	// metadata: MetaMaxInflight.
	ReasonOverloaded = "OVERLOADED"
	// ReasonMetadataNotReady (Unavailable): the node did not know the
	// keyspace and could not tell yet whether it exists (it has not caught
	// up with the metadata log since it started, or lost touch with its
	// leader). Definite.
	ReasonMetadataNotReady = "METADATA_NOT_READY"
	// ReasonRepairIncomplete (Unavailable): a repair pass did not cover
	// every node it had to: a node could not complete its part, or a
	// replica was down. The message names the node. A pass is safe to run
	// again.
	ReasonRepairIncomplete = "REPAIR_INCOMPLETE"
	// ReasonNoObservations (FailedPrecondition): the tuner has observed no
	// traffic on the keyspace, so it has nothing to explain. Definite.
	ReasonNoObservations = "NO_OBSERVATIONS"
	// ReasonSessionBehind (FailedPrecondition): a session read (GetRequest
	// with session_min) found no replica in reach holding the session's
	// version of the key or a newer one, so it returned nothing rather than
	// older data. FailedPrecondition, not Unavailable, because another
	// coordinator would ask the same replicas: the SDK does not retry it;
	// the caller may, once the lagging replicas catch up (hinted handoff,
	// anti-entropy) or the replica that holds the version is back. Definite
	// (it is only ever a read).
	ReasonSessionBehind = "SESSION_BEHIND"
	// ReasonContended (Aborted): a conditional write or linearizable
	// operation lost every Paxos round it tried to concurrent ones on the
	// same key until its attempts ran out. Definite: nothing of the
	// operation's was written, so it is safe to send again (with backoff).
	ReasonContended = "CONTENDED"
	// ReasonOutcomeUnknown (Unknown): a conditional write or linearizable
	// write proposed its record, and it was neither chosen by a majority
	// nor refused by every replica: a later round may still complete it.
	// Not definite. Do not resend it blindly: read the key (linearizably)
	// first, since a condition checked again could apply the write twice.
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
	// ReasonNodeDraining (Unavailable): the node is draining before it
	// stops (a restart) and refused the client request before doing
	// anything. Definite: safe to send again, to another node. The node's
	// Member in ClusterStatus says draining meanwhile.
	ReasonNodeDraining = "NODE_DRAINING"
)

// Reasons returns every reason a server sends, in the order declared above.
// The SDK maps each of them (client's TestEveryServerReasonIsMapped).
func Reasons() []string {
	return []string{
		ReasonInvalidArgument, ReasonKeyspaceNotFound, ReasonKeyspaceExists,
		ReasonNotEnoughReplicas, ReasonQuorumNotReached, ReasonNoMetadataLeader,
		ReasonStaleEpoch, ReasonNodeNotFound, ReasonConfigUnconfirmed,
		ReasonConfigLeaseLost, ReasonNodeNotReady, ReasonOverloaded,
		ReasonMetadataNotReady, ReasonRepairIncomplete, ReasonNoObservations,
		ReasonSessionBehind, ReasonContended, ReasonOutcomeUnknown,
		ReasonNodeDraining,
	}
}

// ErrorInfo metadata keys: numbers some reasons carry, as decimal strings.
const (
	// MetaAcked is how many replicas acknowledged (QUORUM_NOT_REACHED).
	MetaAcked = "acked"
	// MetaAlive is how many replicas were alive (NOT_ENOUGH_REPLICAS).
	MetaAlive = "alive"
	// MetaRequired is R or W, what the operation needed.
	MetaRequired = "required"
	// MetaMaxInflight is the node's bound on requests in flight
	// (OVERLOADED).
	MetaMaxInflight = "max_inflight"
)
