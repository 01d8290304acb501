package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/replication/antientropy"
)

// repairJSON is the JSON output of keyspace repair.
type repairJSON struct {
	Keyspace          string   `json:"keyspace"`
	Epoch             uint64   `json:"epoch"`
	ReplicationFactor int      `json:"replication_factor"`
	Nodes             []string `json:"nodes"`
	Down              []string `json:"down"`
	KeysScanned       uint64   `json:"keys_scanned"`
	TombstonesScanned uint64   `json:"tombstones_scanned"`
	RangesCompared    uint64   `json:"ranges_compared"`
	RangesDiffering   uint64   `json:"ranges_differing"`
	DigestsSent       uint64   `json:"digests_sent"`
	BytesSent         uint64   `json:"bytes_sent"`
	RecordsPushed     uint64   `json:"records_pushed"`
	BytesPushed       uint64   `json:"bytes_pushed"`
	ReplicasRepaired  []string `json:"replicas_repaired"`
	Duration          string   `json:"duration"`
	DurationMs        uint64   `json:"duration_ms"`
}

func toRepairJSON(name string, r *kvpb.RepairKeyspaceResponse) repairJSON {
	st := r.GetStats()
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return repairJSON{
		Keyspace: name, Epoch: r.GetEpoch(), ReplicationFactor: int(r.GetReplicationFactor()),
		Nodes: nonNil(r.GetNodes()), Down: nonNil(r.GetDown()),
		KeysScanned: st.GetKeysScanned(), TombstonesScanned: st.GetTombstonesScanned(), DigestsSent: st.GetDigestsSent(),
		RangesCompared: st.GetRangesCompared(), RangesDiffering: st.GetRangesDiffering(), BytesSent: st.GetBytesSent(),
		RecordsPushed: st.GetRecordsPushed(), BytesPushed: st.GetBytesPushed(), ReplicasRepaired: nonNil(st.GetRepairedNodes()),
		Duration: (time.Duration(st.GetElapsedMs()) * time.Millisecond).String(), DurationMs: st.GetElapsedMs(),
	}
}

// sizeText renders a byte count for people: 512 B, 1.5 KiB, 3.2 MiB.
func sizeText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func listText(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (a *app) printRepair(name string, r *kvpb.RepairKeyspaceResponse) error {
	if a.json() {
		return a.printJSON(toRepairJSON(name, r))
	}
	j := toRepairJSON(name, r)
	tw := a.table()
	fmt.Fprintf(tw, "keyspace:\t%s (epoch %d, %d replicas of each key)\n", j.Keyspace, j.Epoch, j.ReplicationFactor)
	fmt.Fprintf(tw, "nodes:\t%s\n", listText(j.Nodes))
	if len(j.Down) > 0 {
		fmt.Fprintf(tw, "down, not repaired:\t%s\n", listText(j.Down))
	}
	fmt.Fprintf(tw, "keys scanned:\t%d (%d tombstones; a key counts once per node holding it)\n", j.KeysScanned, j.TombstonesScanned)
	fmt.Fprintf(tw, "ranges compared:\t%d (%d differed; a range counts once per replica pair compared)\n", j.RangesCompared, j.RangesDiffering)
	fmt.Fprintf(tw, "digests compared:\t%d\n", j.DigestsSent)
	fmt.Fprintf(tw, "bytes sent:\t%s (requests and responses between replicas)\n", sizeText(j.BytesSent))
	fmt.Fprintf(tw, "records pushed:\t%d (%s)\n", j.RecordsPushed, sizeText(j.BytesPushed))
	fmt.Fprintf(tw, "replicas repaired:\t%s\n", listText(j.ReplicasRepaired))
	fmt.Fprintf(tw, "duration:\t%s\n", j.Duration)
	return tw.Flush()
}

// repairError turns a status from the repair RPC into a client.Error, so
// that it is reported (describe) and mapped to an exit status like the
// SDK's errors.
func repairError(addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &client.Error{Op: "repair_keyspace", Code: st.Code(), Message: st.Message(), Addr: addr, Cause: err}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == client.ErrorDomain {
			e.Reason = info.GetReason()
		}
	}
	return e
}

// connectionFailure reports an error that says nothing about the pass, only
// that the node could not be reached: another endpoint may do.
func connectionFailure(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Reason == "" && (ce.Code == codes.Unavailable || ce.Code == codes.DeadlineExceeded)
}

func (a *app) repairCommand() *cobra.Command {
	var (
		opts          node.RepairOptions
		progressEvery time.Duration
		maxTime       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "repair NAME",
		Short: "Bring every alive replica of every key of a keyspace up to the newest version (anti-entropy)",
		Long: `Repair runs an anti-entropy pass over a keyspace: every alive node walks its
own records (deletes included), compares them with the other replicas of each
key and writes them the records they lack or hold older. With --method merkle
(the default) replicas compare per token range Merkle trees and send digests
only for the records under the leaves that differ, so a pass over replicas
that agree sends a few hashes per range; --method digest sends a (key,
version) digest per record.
When it succeeds, every alive replica holds at least the newest version that
any of them held when the pass started. It fails, naming the node, when a
node could not complete its part, and refuses to start while a replica is
down unless --allow-down is given. Running it again is always safe.

Progress lines go to stderr every --progress-every; the summary goes to
stdout. --timeout bounds reaching a node, not the pass; --max-time bounds
the pass.`,
		Example: `  adaptkv keyspace repair users
  adaptkv keyspace repair users --rf 5        # stream to the replicas N=5 would add
  adaptkv keyspace repair users --allow-down -o json`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "" {
				return usagef("keyspace name is empty")
			}
			if opts.PageSize < 0 || opts.PageSize > node.MaxRepairPageSize {
				return usagef("--page-size %d: want 1 to %d (0 for the default)", opts.PageSize, node.MaxRepairPageSize)
			}
			if opts.Concurrency < 0 || opts.Concurrency > node.MaxRepairConcurrency {
				return usagef("--concurrency %d: want 1 to %d (0 for the default)", opts.Concurrency, node.MaxRepairConcurrency)
			}
			if opts.ReplicationFactor < 0 {
				return usagef("--rf %d: must not be negative", opts.ReplicationFactor)
			}
			if opts.Method != antientropy.MethodMerkle && opts.Method != antientropy.MethodDigest {
				return usagef("--method %q: want merkle or digest", opts.Method)
			}
			if opts.MerkleDepth < 0 || opts.MerkleDepth > antientropy.MaxMerkleDepth {
				return usagef("--merkle-depth %d: want 1 to %d (0 for the default)", opts.MerkleDepth, antientropy.MaxMerkleDepth)
			}
			if progressEvery <= 0 {
				return usagef("--progress-every %v: must be positive", progressEvery)
			}
			if maxTime < 0 {
				return usagef("--max-time %v: must not be negative", maxTime)
			}
			if a.timeout <= 0 {
				return usagef("--timeout %v: must be positive", a.timeout)
			}
			opts.ProgressInterval = progressEvery
			eps, err := a.clusterEndpoints()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if maxTime > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, maxTime)
				defer cancel()
			}
			req := &kvpb.RepairKeyspaceRequest{Keyspace: name, Options: repairOptionsPB(opts)}
			for i, addr := range eps {
				done, err := a.repairVia(ctx, addr, req)
				if err == nil {
					return a.printRepair(name, done)
				}
				if !connectionFailure(err) || i == len(eps)-1 {
					return err
				}
				fmt.Fprintf(a.stderr, "adaptkv: %s: %s; trying the next node\n", addr, describe(err))
			}
			return errors.New("no endpoints")
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&opts.PageSize, "page-size", 0, fmt.Sprintf("local records each node reads at once (default %d)", node.DefaultRepairPageSize))
	fs.IntVar(&opts.Concurrency, "concurrency", 0, fmt.Sprintf("replicas each node works with at once (default %d)", node.DefaultRepairConcurrency))
	fs.IntVar(&opts.ReplicationFactor, "rf", 0, "fill this many replicas of each key (default: the keyspace's N); larger streams data to the replicas a larger N would add")
	fs.BoolVar(&opts.AllowDown, "allow-down", false, "repair the alive nodes even when some are down (the down ones are listed, not repaired)")
	fs.BoolVar(&opts.PushAll, "push-all", false, "skip every comparison and push every record to every other replica (more traffic)")
	fs.StringVar(&opts.Method, "method", "merkle", "how replicas are compared: merkle (trees per range, digests only where they differ) or digest (a digest per record)")
	fs.IntVar(&opts.MerkleDepth, "merkle-depth", 0, fmt.Sprintf("levels of the merkle trees (default %d: %d leaves per range)", antientropy.DefaultMerkleDepth, 1<<antientropy.DefaultMerkleDepth))
	fs.DurationVar(&progressEvery, "progress-every", 2*time.Second, "time between progress lines on stderr")
	fs.DurationVar(&maxTime, "max-time", 0, "give up on the pass after this long (0: no limit)")
	return cmd
}

// repairOptionsPB converts the flags for the wire; zero fields take the
// server's defaults.
func repairOptionsPB(o node.RepairOptions) *kvpb.RepairOptions {
	return &kvpb.RepairOptions{
		PageSize: uint32(o.PageSize), Concurrency: uint32(o.Concurrency), ReplicationFactor: uint32(o.ReplicationFactor),
		AllowDown: o.AllowDown, PushAll: o.PushAll, ProgressIntervalMs: uint32(o.ProgressInterval / time.Millisecond),
		Method: o.Method, MerkleDepth: uint32(o.MerkleDepth),
	}
}

// repairVia runs the pass through the node at addr, printing progress, and
// returns its last message. The node must answer within --timeout; the
// pass itself may take as long as ctx allows.
func (a *app) repairVia(ctx context.Context, addr string, req *kvpb.RepairKeyspaceRequest) (*kvpb.RepairKeyspaceResponse, error) {
	creds, err := a.grpcCreds()
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(addr, creds)
	if err != nil {
		return nil, usageErr(fmt.Errorf("endpoint %q: %w", addr, err))
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Until the node's first message, --timeout applies.
	var answered, timedOut atomic.Bool
	timer := time.AfterFunc(a.timeout, func() {
		if !answered.Load() {
			timedOut.Store(true)
			cancel()
		}
	})
	defer timer.Stop()
	stream, err := kvpb.NewAdminClient(cc).RepairKeyspace(ctx, req)
	if err != nil {
		return nil, repairError(addr, err)
	}
	first := true
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, repairError(addr, status.Error(codes.Internal, "the node ended the pass without a summary"))
		}
		if err != nil {
			if first && timedOut.Load() {
				return nil, repairError(addr, status.Errorf(codes.DeadlineExceeded, "no answer within --timeout %v", a.timeout))
			}
			return nil, repairError(addr, err)
		}
		if first {
			answered.Store(true)
			timer.Stop()
			first = false
			fmt.Fprintf(a.stderr, "adaptkv: repairing keyspace %s on %s (%d replicas of each key, epoch %d)\n",
				req.GetKeyspace(), listText(m.GetNodes()), m.GetReplicationFactor(), m.GetEpoch())
			if len(m.GetDown()) > 0 {
				fmt.Fprintf(a.stderr, "adaptkv: warning: %s down and will not be repaired\n", listText(m.GetDown()))
			}
		}
		if m.GetDone() {
			return m, nil
		}
		if st := m.GetStats(); st.GetElapsedMs() > 0 {
			fmt.Fprintf(a.stderr, "adaptkv: repair %s: %d/%d nodes done, %d keys scanned, %d ranges compared (%d differed), %d records pushed to %s, %s\n",
				req.GetKeyspace(), len(m.GetNodesDone()), len(m.GetNodes()), st.GetKeysScanned(), st.GetRangesCompared(), st.GetRangesDiffering(), st.GetRecordsPushed(),
				listText(st.GetRepairedNodes()), time.Duration(st.GetElapsedMs())*time.Millisecond)
		}
	}
}
