package client

import (
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Version orders the writes of a key: the greater version wins (last writer
// wins). Timestamp is a hybrid logical clock reading whose upper 48 bits are
// Unix milliseconds and lower 16 a logical counter; Node is the number of the
// coordinating node and breaks ties.
type Version struct {
	Timestamp uint64
	Node      uint32
}

// Time returns the wall-clock part of the timestamp, with millisecond
// precision.
func (v Version) Time() time.Time {
	return time.UnixMilli(int64(v.Timestamp >> 16))
}

// Less reports whether v orders before o.
func (v Version) Less(o Version) bool {
	if v.Timestamp != o.Timestamp {
		return v.Timestamp < o.Timestamp
	}
	return v.Node < o.Node
}

// IsZero reports whether v is the zero version, as for a key never written.
func (v Version) IsZero() bool { return v == Version{} }

func versionFromPB(v *kvpb.Version) Version {
	return Version{Timestamp: v.GetTimestamp(), Node: v.GetNode()}
}

// Receipt says what a successful request achieved. The server never weakens
// the requested level: if it cannot be met the call fails instead, so Level
// and Required are what was asked (or the keyspace default) and Acked is at
// least Required.
type Receipt struct {
	// Level is the level used; the keyspace's default when the call gave
	// none.
	Level Level
	// N is the keyspace's replication factor.
	N int
	// Required is R for reads, W for writes.
	Required int
	// Acked is how many replicas acknowledged (writes) or answered (reads)
	// before the reply. More may acknowledge afterwards.
	Acked int
	// Repaired is how many stale replicas a read repaired before replying.
	Repaired int
	// Coordinator is the ID of the node that coordinated the request.
	Coordinator string
	// Epoch is the keyspace configuration epoch the request ran under.
	Epoch uint64
}

func receiptFromPB(r *kvpb.Receipt) Receipt {
	return Receipt{
		Level:       levelFromPB(r.GetLevel()),
		N:           int(r.GetN()),
		Required:    int(r.GetRequired()),
		Acked:       int(r.GetAcked()),
		Repaired:    int(r.GetRepaired()),
		Coordinator: r.GetCoordinator(),
		Epoch:       r.GetEpoch(),
	}
}

// GetResult is the answer to Get.
type GetResult struct {
	// Found is false when the key does not exist or was deleted; Value and
	// Version are then zero.
	Found   bool
	Value   []byte
	Version Version
	Receipt Receipt
}

// WriteResult is the answer to Put and Delete.
type WriteResult struct {
	// Version is the version the write was stored with; a later read
	// returns it until another write supersedes it.
	Version Version
	Receipt Receipt
}

// KeyValue is one item of a scan.
type KeyValue struct {
	Key     []byte
	Value   []byte
	Version Version
}

// ScanResult is the answer to Scan.
type ScanResult struct {
	// Items are in key order.
	Items []KeyValue
	// More is true when the limit cut the result short; continue with
	// WithRange(NextStart, end).
	More      bool
	NextStart []byte
	Receipt   Receipt
}

// KeyspaceSpec configures a keyspace in CreateKeyspace and AlterKeyspace.
type KeyspaceSpec struct {
	// ReplicationFactor is N, the number of replicas of every key. It must
	// not exceed the number of nodes. In AlterKeyspace 0 keeps the current
	// value; in CreateKeyspace 0 lets the server choose.
	ReplicationFactor int
	// Consistency is the default level of calls that give none.
	// LevelDefault keeps the current default (AlterKeyspace) or lets the
	// server choose (CreateKeyspace, quorum). Custom requires R and W.
	Consistency Level
	// R and W are the default read and write quorums; only with Custom.
	R, W int
	// Adaptive, when set, makes the keyspace adaptive: it states a goal
	// instead of a level, and the tuner keeps the keyspace at the cheapest
	// R and W that meet it. Consistency must then be LevelDefault.
	Adaptive *AdaptiveGoal
}

// AdaptiveGoal is an adaptive keyspace's goal and bounds.
type AdaptiveGoal struct {
	// MaxStale bounds the probability that a read misses the latest
	// completed write, e.g. 0.001.
	MaxStale float64
	// Floor is the weakest level allowed: One (the default) or Quorum, with
	// which R + W > N holds at every instant, transitions included.
	Floor Level
	// SessionFloor is the floor `session` (Floor must be One or unset):
	// the tuner may choose partial quorums as under One, and the
	// keyspace's clients read and write through sessions (Client.Session),
	// whose guarantees hold at any R and W.
	SessionFloor bool
	// MinRF and MaxRF bound the replication factor; 0 means the keyspace's.
	MinRF, MaxRF int
	// LatencyTarget is an optional read p99 target.
	LatencyTarget time.Duration
}

func (g *AdaptiveGoal) toPB() *kvpb.AdaptiveGoal {
	if g == nil {
		return nil
	}
	return &kvpb.AdaptiveGoal{MaxStale: g.MaxStale, Floor: levelToPB(g.Floor), RfMin: uint32(g.MinRF), RfMax: uint32(g.MaxRF),
		LatencyTargetUs: uint64(g.LatencyTarget / time.Microsecond), SessionFloor: g.SessionFloor}
}

// Keyspace is a keyspace's configuration as committed to the metadata log.
type Keyspace struct {
	Name              string
	ReplicationFactor int
	// Consistency is the default level; R and W are set when it is Custom.
	Consistency Level
	R, W        int
	// Epoch is the metadata log index of the change that set this
	// configuration; receipts carry it.
	Epoch   uint64
	Created time.Time
	Updated time.Time
	// Adaptive is the goal of an adaptive keyspace (nil for a fixed
	// level); Consistency, R and W are then what the tuner put in force.
	Adaptive *AdaptiveGoal
}

func keyspaceFromPB(k *kvpb.KeyspaceConfig) *Keyspace {
	ks := &Keyspace{
		Name:              k.GetName(),
		ReplicationFactor: int(k.GetReplicationFactor()),
		Consistency:       levelFromPB(k.GetDefaultConsistency().GetLevel()),
		Epoch:             k.GetEpoch(),
	}
	if ks.Consistency == Custom {
		ks.R = int(k.GetDefaultConsistency().GetR())
		ks.W = int(k.GetDefaultConsistency().GetW())
	}
	if ms := k.GetCreatedUnixMs(); ms != 0 {
		ks.Created = time.UnixMilli(ms)
	}
	if ms := k.GetUpdatedUnixMs(); ms != 0 {
		ks.Updated = time.UnixMilli(ms)
	}
	if a := k.GetAdaptive(); a != nil {
		ks.Adaptive = &AdaptiveGoal{MaxStale: a.GetMaxStale(), Floor: levelFromPB(a.GetFloor()), MinRF: int(a.GetRfMin()),
			MaxRF: int(a.GetRfMax()), LatencyTarget: time.Duration(a.GetLatencyTargetUs()) * time.Microsecond,
			SessionFloor: a.GetSessionFloor()}
	}
	return ks
}

// Member states, as found in Member.State.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
	StateUnknown = "unknown"
)

func stateFromPB(s kvpb.MemberState) string {
	switch s {
	case kvpb.MemberState_MEMBER_ALIVE:
		return StateAlive
	case kvpb.MemberState_MEMBER_SUSPECT:
		return StateSuspect
	case kvpb.MemberState_MEMBER_DEAD:
		return StateDead
	case kvpb.MemberState_MEMBER_LEFT:
		return StateLeft
	}
	return StateUnknown
}

// Member is one node of the cluster as the answering node sees it.
type Member struct {
	ID string
	// Number is the small integer that identifies the node in versions.
	Number     uint32
	GRPCAddr   string
	GossipAddr string
	RaftAddr   string
	// HTTPAddr serves metrics and pprof.
	HTTPAddr string
	Zone     string
	// State is one of StateAlive, StateSuspect, StateDead, StateLeft,
	// StateUnknown.
	State string
	// RaftRole is the node's role in the metadata Raft group: "leader",
	// "voter", "nonvoter" or empty.
	RaftRole string
	// RingOwnership is the fraction of the ring whose primary is this node.
	RingOwnership float64
	// RingState is the member's place on the ring as the metadata log
	// decides it: "joining" (receiving its ranges, not serving reads),
	// "normal", "leaving", "removing" (a dead member being removed) or
	// "left"; empty when the log has not placed it.
	RingState string
	// Draining is true while the node drains before it stops (a restart):
	// it refuses new requests with NODE_DRAINING, so the client routes
	// around it until it is back.
	Draining bool
	// Flagged is true while the cluster's health detector has the node
	// flagged as a gray failure (alive but much slower or failing more
	// than its peers); FlagReason says why. The client sends it requests
	// only when no other node will do.
	Flagged    bool
	FlagReason string
}

// ClusterStatus is one node's view of the cluster.
type ClusterStatus struct {
	// NodeID is the node that answered.
	NodeID  string
	Members []Member
	// MetadataLeader is the ID of the metadata Raft leader, empty when
	// there is none.
	MetadataLeader string
	// MetadataIndex is the last metadata log index the node applied.
	MetadataIndex uint64
	// Vnodes is the number of virtual nodes per member on the ring.
	Vnodes int
	// HintsPending is the number of hints stored on the answering node.
	HintsPending uint64
	// TopologyEpoch is the index of the metadata log entry that last
	// changed the ring, as the answering node has applied it.
	TopologyEpoch uint64
	// Stream is the progress of the topology change's stream, nil when no
	// change is in progress.
	Stream *StreamStatus
	// Security is how the answering node protects its connections.
	Security NodeSecurity
}

// NodeSecurity is how a node protects its connections.
type NodeSecurity struct {
	// Secure is true for mutual TLS, false for a node run --insecure
	// (plaintext, unauthenticated).
	Secure bool
	// CertNotAfter and CANotAfter are when the node's certificate and the
	// CA's expire; zero when insecure.
	CertNotAfter, CANotAfter time.Time
}

// StreamStatus is the progress of a topology change's stream: live from
// the node driving it, otherwise the last checkpoint in the metadata log.
type StreamStatus struct {
	Change         string
	Since          uint64
	Driver         string
	Live           bool
	Keyspace       string
	KeyspacesDone  int
	KeyspacesTotal int
	// SourcesDone and SourcesTotal count (keyspace, current member) scans.
	SourcesDone    int
	SourcesTotal   int
	RecordsScanned uint64
	BytesScanned   uint64
	RecordsPushed  uint64
	BytesPushed    uint64
	Started        time.Time
	Updated        time.Time
	// BytesPerSecond is the bytes scanned per second since the driver
	// started or resumed.
	BytesPerSecond float64
	Resumes        int
	// RateLimit is the driver's limit in bytes per second, 0 for none or
	// unknown (reported by the driver only).
	RateLimit int64
}

func streamStatusFromPB(s *kvpb.StreamStatus) *StreamStatus {
	if s == nil {
		return nil
	}
	return &StreamStatus{Change: s.GetChange(), Since: s.GetSince(), Driver: s.GetDriver(), Live: s.GetLive(),
		Keyspace: s.GetKeyspace(), KeyspacesDone: int(s.GetKeyspacesDone()), KeyspacesTotal: int(s.GetKeyspacesTotal()),
		SourcesDone: int(s.GetSourcesDone()), SourcesTotal: int(s.GetSourcesTotal()),
		RecordsScanned: s.GetRecordsScanned(), BytesScanned: s.GetBytesScanned(),
		RecordsPushed: s.GetRecordsPushed(), BytesPushed: s.GetBytesPushed(),
		Started: time.UnixMilli(s.GetStartedUnixMs()), Updated: time.UnixMilli(s.GetUpdatedUnixMs()),
		BytesPerSecond: s.GetBytesPerSecond(), Resumes: int(s.GetResumes()), RateLimit: s.GetRateLimit()}
}

func clusterStatusFromPB(r *kvpb.ClusterStatusResponse) *ClusterStatus {
	st := &ClusterStatus{
		NodeID:         r.GetNodeId(),
		MetadataLeader: r.GetMetadataLeader(),
		MetadataIndex:  r.GetMetadataIndex(),
		Vnodes:         int(r.GetVnodes()),
		HintsPending:   r.GetHintsPending(),
		TopologyEpoch:  r.GetTopologyEpoch(),
		Stream:         streamStatusFromPB(r.GetStream()),
		Security:       nodeSecurityFromPB(r.GetSecurity()),
		Members:        make([]Member, 0, len(r.GetMembers())),
	}
	for _, m := range r.GetMembers() {
		st.Members = append(st.Members, Member{
			ID:            m.GetId(),
			Number:        m.GetNumber(),
			GRPCAddr:      m.GetGrpcAddr(),
			GossipAddr:    m.GetGossipAddr(),
			RaftAddr:      m.GetRaftAddr(),
			HTTPAddr:      m.GetHttpAddr(),
			Zone:          m.GetZone(),
			State:         stateFromPB(m.GetState()),
			RaftRole:      m.GetRaftRole(),
			RingOwnership: m.GetRingOwnership(),
			RingState:     m.GetRingState(),
			Draining:      m.GetDraining(),
			Flagged:       m.GetFlagged(),
			FlagReason:    m.GetFlagReason(),
		})
	}
	return st
}

// LocalRecord is a key as one replica stores it, read by LocalGet without
// any quorum or repair.
type LocalRecord struct {
	// Found is false when the replica has no record of the key.
	Found bool
	// Tombstone is true when the record is a delete; Value is then empty.
	Tombstone bool
	Value     []byte
	Version   Version
	// NodeID is the node that answered, as a check that the right replica
	// was read.
	NodeID string
}

func nodeSecurityFromPB(s *kvpb.NodeSecurity) NodeSecurity {
	if !s.GetSecure() {
		return NodeSecurity{}
	}
	return NodeSecurity{Secure: true, CertNotAfter: time.Unix(s.GetCertNotAfterUnix(), 0).UTC(), CANotAfter: time.Unix(s.GetCaNotAfterUnix(), 0).UTC()}
}
