package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// RepairOptions tune a repair pass; the zero value is the server's defaults
// over every replica, refusing when a ring member is down.
type RepairOptions struct {
	// PageSize is the number of local records a node reads at once (0: the
	// server's default).
	PageSize int
	// Concurrency is the number of replicas a node works with at once (0:
	// the server's default).
	Concurrency int
	// ReplicationFactor, above the keyspace's N, also fills the replicas a
	// larger N would add (0: N).
	ReplicationFactor int
	// AllowDown runs the pass over the alive nodes when some are down; the
	// down ones are listed in the report and not repaired.
	AllowDown bool
	// PushAll skips every comparison and pushes every record.
	PushAll bool
	// Method is how replicas are compared: "merkle" (Merkle trees per token
	// range, digests only where they differ) or "digest" (a digest per
	// record); "" is the server's default, merkle.
	Method string
}

// RepairReport is a repair pass's progress, or its result once Done.
type RepairReport struct {
	// Nodes run the pass; NodesDone completed their part; Down were skipped
	// (AllowDown).
	Nodes, NodesDone, Down []string
	// Epoch is the keyspace configuration the pass ran under, and
	// ReplicationFactor the replicas of each key it filled.
	Epoch             uint64
	ReplicationFactor int
	// KeysScanned counts the local records walked, summed over nodes;
	// DigestsSent the (key, version) pairs compared; RecordsPushed and
	// BytesPushed what was written to replicas that lacked it; RepairedNodes
	// the replicas that got at least one record.
	KeysScanned, TombstonesScanned, DigestsSent, RecordsPushed, BytesPushed uint64
	RepairedNodes                                                           []string
	// RangesCompared counts the (token range, replica pair) trees compared
	// and RangesDiffering those that differed (merkle method); BytesSent is
	// the size of the pass's messages between replicas.
	RangesCompared, RangesDiffering, BytesSent uint64
	// Elapsed is how long the pass has run.
	Elapsed time.Duration
	// Done is set on the last report: every node completed.
	Done bool
}

func repairReportFromPB(m *kvpb.RepairKeyspaceResponse) *RepairReport {
	st := m.GetStats()
	return &RepairReport{
		Nodes: m.GetNodes(), NodesDone: m.GetNodesDone(), Down: m.GetDown(),
		Epoch: m.GetEpoch(), ReplicationFactor: int(m.GetReplicationFactor()),
		KeysScanned: st.GetKeysScanned(), TombstonesScanned: st.GetTombstonesScanned(), DigestsSent: st.GetDigestsSent(),
		RecordsPushed: st.GetRecordsPushed(), BytesPushed: st.GetBytesPushed(), RepairedNodes: st.GetRepairedNodes(),
		RangesCompared: st.GetRangesCompared(), RangesDiffering: st.GetRangesDiffering(), BytesSent: st.GetBytesSent(),
		Elapsed: time.Duration(st.GetElapsedMs()) * time.Millisecond,
		Done:    m.GetDone(),
	}
}

// RepairKeyspace runs an anti-entropy pass over a keyspace (what `adaptkv
// keyspace repair` does): afterwards every replica holds the newest version
// any of them held when the pass began. progress, when not nil, sees each
// progress report. It returns the final report, or an error (Unavailable
// naming the node when a node could not finish, or a ring member is down
// without AllowDown). A pass is safe to repeat, so a failure on one node is
// retried from another like a read.
func (c *Client) RepairKeyspace(ctx context.Context, keyspace string, opts RepairOptions, progress func(*RepairReport)) (*RepairReport, error) {
	const op = "repair_keyspace"
	if opts.PageSize < 0 || opts.Concurrency < 0 || opts.ReplicationFactor < 0 {
		return nil, localError(op, codes.InvalidArgument, ReasonInvalidArgument, "RepairOptions: page size, concurrency and replication factor must not be negative (got %d, %d, %d)",
			opts.PageSize, opts.Concurrency, opts.ReplicationFactor)
	}
	req := &kvpb.RepairKeyspaceRequest{Keyspace: keyspace, Options: &kvpb.RepairOptions{
		PageSize: uint32(opts.PageSize), Concurrency: uint32(opts.Concurrency),
		ReplicationFactor: uint32(opts.ReplicationFactor), AllowDown: opts.AllowDown, PushAll: opts.PushAll,
		Method: opts.Method,
	}}
	var last *RepairReport
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		stream, err := kvpb.NewAdminClient(cc).RepairKeyspace(ctx, req, co...)
		if err != nil {
			return err
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			last = repairReportFromPB(m)
			if progress != nil {
				progress(last)
			}
		}
	})
	if err != nil {
		return last, err
	}
	if last == nil || !last.Done {
		return last, localError(op, codes.Unavailable, "", "the repair stream of keyspace %q ended without its final report", keyspace)
	}
	return last, nil
}
