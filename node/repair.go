package node

// Anti-entropy repair of a keyspace: the node's wiring of
// replication/antientropy, whose doc says what a pass guarantees and how it
// runs. The node builds the pass's Runner over its engine, metadata,
// membership and peer connections, serves the Peer RPCs a pass sends
// (Digest, Repair: a node's part) and the Admin RPC that starts one, and
// turns the pass's errors into the statuses the API promises.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/antientropy"
)

// Repair defaults and bounds: antientropy's, under the names the node's
// API has always had.
const (
	DefaultRepairPageSize         = antientropy.DefaultPageSize
	MaxRepairPageSize             = antientropy.MaxPageSize
	DefaultRepairConcurrency      = antientropy.DefaultConcurrency
	MaxRepairConcurrency          = antientropy.MaxConcurrency
	DefaultRepairProgressInterval = antientropy.DefaultProgressInterval
)

// RepairOptions tune a repair pass (antientropy.Options).
type RepairOptions = antientropy.Options

// RepairStats count a repair pass's work (antientropy.Stats).
type RepairStats = antientropy.Stats

// RepairReport is the state of a repair pass (antientropy.Report).
type RepairReport = antientropy.Report

// newRepairRunner builds the node's pass runner. Its parts run only once
// the node has joined: before, its ring may lack members, and it would push
// to the wrong replicas.
func newRepairRunner(n *Node) *antientropy.Runner {
	return &antientropy.Runner{
		Self:      n.cfg.ID,
		Engine:    n.engine,
		Keyspaces: repairKeyspaces{n},
		Topology:  repairTopology{n},
		Replicas:  repairReplicas{n.transport, n},
		Nodes:     repairNodes{n},
		Trees:     &antientropy.TreeCache{},
		Ready: func() error {
			if !n.joined.Load() {
				return fmt.Errorf("node %s has not joined the cluster yet", n.cfg.ID)
			}
			return nil
		},
		Logger: n.log,
	}
}

// RepairKeyspace runs an anti-entropy pass over keyspace name on every
// alive node and waits for it (antientropy.Runner.Run says what it
// guarantees and when progress is called).
//
// It fails with a gRPC status: InvalidArgument for a bad name or options,
// NotFound for an unknown keyspace, Unavailable with reason
// REPAIR_INCOMPLETE when a ring member is down (without AllowDown) or a
// node could not complete its part, and Canceled or DeadlineExceeded when
// ctx ends. Only a nil error means the pass covered every node.
func (n *Node) RepairKeyspace(ctx context.Context, name string, opts RepairOptions, progress func(RepairReport)) (RepairReport, error) {
	if err := validKeyspaceName(name); err != nil {
		return RepairReport{}, err
	}
	if err := n.checkJoined(); err != nil {
		return RepairReport{}, err
	}
	rep, err := n.repair.Run(ctx, name, opts, progress)
	if rep.Keyspace != "" { // the pass started
		n.metrics.repairs.record(name, rep, err, time.Now())
	}
	return rep, repairStatus(err)
}

// repairStatus maps a pass's error to the status the API promises.
func repairStatus(err error) error {
	var ie *antientropy.IncompleteError
	if !errors.As(err, &ie) {
		return toStatus(err)
	}
	meta := map[string]string{"nodes": strings.Join(ie.Failed, ",")}
	if len(ie.Down) > 0 {
		meta = map[string]string{"down": strings.Join(ie.Down, ",")}
	}
	return withReason(codes.Unavailable, api.ReasonRepairIncomplete, ie.Error(), meta)
}

// repairKeyspaces is the metadata a pass reads: the applied log, and the
// coordinator's brief wait for a keyspace not applied yet.
type repairKeyspaces struct{ n *Node }

func (k repairKeyspaces) Keyspace(name string) (replication.KeyspaceConfig, bool) {
	return k.n.meta.Keyspace(name)
}
func (k repairKeyspaces) WaitForIndex(ctx context.Context, index uint64) error {
	return k.n.meta.WaitForIndex(ctx, index)
}
func (k repairKeyspaces) Applied() uint64 { return k.n.meta.Applied() }
func (k repairKeyspaces) WaitForKeyspace(ctx context.Context, name string) (replication.KeyspaceConfig, error) {
	return k.n.coord.WaitForKeyspace(ctx, name)
}

// repairTopology hands a pass one membership view at a time: the ring of
// the metadata log's topology, liveness from gossip.
type repairTopology struct{ n *Node }

func (t repairTopology) View() antientropy.View {
	v := t.n.members.View()
	return antientropy.View{Ring: topology{t.n}.Ring(), Alive: v.Alive}
}

// repairReplicas carries a pass's digests and writes. Repair writes go
// straight to the peer, not through the write batcher: they are already
// batched by page, and must not queue behind (or hold up) client writes to
// the same peer.
type repairReplicas struct {
	t *peerTransport
	n *Node
}

func (r repairReplicas) Digest(ctx context.Context, to string, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	return call(ctx, r.t, to, req, r.t.local.Digest, kvpb.PeerClient.Digest)
}

func (r repairReplicas) CompareTrees(ctx context.Context, to string, req *kvpb.CompareTreesRequest) (*kvpb.CompareTreesResponse, error) {
	return call(ctx, r.t, to, req, r.n.repair.CompareTrees, kvpb.PeerClient.CompareTrees)
}

func (r repairReplicas) Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	return call(ctx, r.t, to, req, r.t.local.Write, kvpb.PeerClient.Write)
}

// repairNodes runs other nodes' parts of a pass through Peer.Repair.
type repairNodes struct{ n *Node }

// RunPart runs node id's part of a pass through Peer.Repair and relays its
// progress.
func (r repairNodes) RunPart(ctx context.Context, id, name string, epoch uint64, opts RepairOptions, progress func(RepairStats)) (RepairStats, error) {
	c, err := r.n.transport.client(id)
	if err != nil {
		return RepairStats{}, err
	}
	stream, err := c.Repair(ctx, &kvpb.ReplicaRepairRequest{Keyspace: name, Epoch: epoch, Options: repairOptionsToPB(opts), From: r.n.cfg.ID})
	if err != nil {
		return RepairStats{}, err
	}
	var last RepairStats
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, fmt.Errorf("node %s ended its stream before completing", id)
		}
		if err != nil {
			return last, err
		}
		last = repairStatsFromPB(resp.GetStats())
		if resp.GetDone() {
			return last, nil
		}
		progress(last)
	}
}

func repairOptionsFromPB(o *kvpb.RepairOptions) RepairOptions {
	return RepairOptions{
		PageSize: int(o.GetPageSize()), Concurrency: int(o.GetConcurrency()),
		ReplicationFactor: int(o.GetReplicationFactor()), AllowDown: o.GetAllowDown(), PushAll: o.GetPushAll(),
		ProgressInterval: time.Duration(o.GetProgressIntervalMs()) * time.Millisecond,
		Method:           o.GetMethod(), MerkleDepth: int(o.GetMerkleDepth()), PassID: o.GetPassId(),
		RateLimit: o.GetRateLimit(), Exclusive: o.GetExclusive(),
	}
}

func repairOptionsToPB(o RepairOptions) *kvpb.RepairOptions {
	return &kvpb.RepairOptions{
		PageSize: uint32(o.PageSize), Concurrency: uint32(o.Concurrency),
		ReplicationFactor: uint32(o.ReplicationFactor), AllowDown: o.AllowDown, PushAll: o.PushAll,
		ProgressIntervalMs: uint32(o.ProgressInterval / time.Millisecond),
		Method:             o.Method, MerkleDepth: uint32(o.MerkleDepth), PassId: o.PassID,
		RateLimit: o.RateLimit, Exclusive: o.Exclusive,
	}
}

func repairStatsToPB(s RepairStats) *kvpb.RepairStats {
	return &kvpb.RepairStats{
		KeysScanned: s.KeysScanned, TombstonesScanned: s.TombstonesScanned, DigestsSent: s.DigestsSent,
		RecordsPushed: s.RecordsPushed, BytesPushed: s.BytesPushed, RepairedNodes: s.RepairedNodes,
		ElapsedMs:      uint64(s.Elapsed / time.Millisecond),
		RangesCompared: s.RangesCompared, RangesDiffering: s.RangesDiffering, LeavesDiffering: s.LeavesDiffering,
		HashesSent: s.HashesSent, BytesSent: s.BytesSent,
	}
}

func repairStatsFromPB(p *kvpb.RepairStats) RepairStats {
	return RepairStats{
		KeysScanned: p.GetKeysScanned(), TombstonesScanned: p.GetTombstonesScanned(), DigestsSent: p.GetDigestsSent(),
		RecordsPushed: p.GetRecordsPushed(), BytesPushed: p.GetBytesPushed(), RepairedNodes: slices.Clone(p.GetRepairedNodes()),
		Elapsed:        time.Duration(p.GetElapsedMs()) * time.Millisecond,
		RangesCompared: p.GetRangesCompared(), RangesDiffering: p.GetRangesDiffering(), LeavesDiffering: p.GetLeavesDiffering(),
		HashesSent: p.GetHashesSent(), BytesSent: p.GetBytesSent(),
	}
}

func repairReportToPB(r RepairReport) *kvpb.RepairKeyspaceResponse {
	return &kvpb.RepairKeyspaceResponse{
		Stats: repairStatsToPB(r.Stats), Nodes: r.Nodes, NodesDone: r.NodesDone, Down: r.Down,
		Epoch: r.Epoch, ReplicationFactor: uint32(r.ReplicationFactor), Done: r.Done,
	}
}

// Digest implements the Peer service.
func (s peerServer) Digest(ctx context.Context, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	resp, err := s.n.replica.Digest(ctx, req)
	return resp, toStatus(err)
}

// CompareTrees implements the Peer service: the merkle method's
// comparison (antientropy.Runner.CompareTrees).
func (s peerServer) CompareTrees(ctx context.Context, req *kvpb.CompareTreesRequest) (*kvpb.CompareTreesResponse, error) {
	if err := s.n.checkJoined(); err != nil {
		return nil, err
	}
	resp, err := s.n.repair.CompareTrees(ctx, req)
	return resp, toStatus(err)
}

// Repair implements the Peer service: this node's part of a pass, with
// progress at most every ProgressInterval and a last message with done set.
func (s peerServer) Repair(req *kvpb.ReplicaRepairRequest, stream grpc.ServerStreamingServer[kvpb.ReplicaRepairResponse]) error {
	opts := repairOptionsFromPB(req.GetOptions()).WithDefaults()
	if err := opts.Validate(); err != nil {
		return toStatus(err)
	}
	var last time.Time
	st, err := s.n.repair.RunPart(stream.Context(), req.GetKeyspace(), req.GetEpoch(), opts, func(st RepairStats) {
		if time.Since(last) < opts.ProgressInterval {
			return
		}
		last = time.Now()
		// A failed send means the caller is gone; the stream's context
		// ends with it and stops the pass.
		_ = stream.Send(&kvpb.ReplicaRepairResponse{Stats: repairStatsToPB(st)})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&kvpb.ReplicaRepairResponse{Stats: repairStatsToPB(st), Done: true})
}

// RepairKeyspace implements the Admin service: it runs the pass from this
// node and streams its progress, the first message at once and then at
// most every ProgressInterval; the last message has done set.
func (s adminServer) RepairKeyspace(req *kvpb.RepairKeyspaceRequest, stream grpc.ServerStreamingServer[kvpb.RepairKeyspaceResponse]) error {
	opts := repairOptionsFromPB(req.GetOptions()).WithDefaults()
	var last time.Time
	rep, err := s.n.RepairKeyspace(stream.Context(), req.GetKeyspace(), opts, func(r RepairReport) {
		if !last.IsZero() && time.Since(last) < opts.ProgressInterval {
			return
		}
		last = time.Now()
		_ = stream.Send(repairReportToPB(r))
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(repairReportToPB(rep))
}
