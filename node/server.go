package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node/membership"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/tuner"
)

var keyspacePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]{0,63}$`)

func validKeyspaceName(name string) error {
	if !keyspacePattern.MatchString(name) {
		return invalidArgument(fmt.Sprintf("keyspace name %q: want 1-64 letters, digits, '_' or '-', starting with a letter", name))
	}
	return nil
}

// checkJoined refuses to coordinate before the node has joined the cluster.
// The refusal is definite (nothing was sent), so clients retry elsewhere.
func (n *Node) checkJoined() error {
	if n.joined.Load() {
		return nil
	}
	return withReason(codes.Unavailable, api.ReasonNotEnoughReplicas,
		fmt.Sprintf("node %s has not joined the cluster yet, so it does not know every replica; nothing was written", n.cfg.ID), nil)
}

func (n *Node) validateKey(keyspace string, key []byte) error {
	if err := validKeyspaceName(keyspace); err != nil {
		return err
	}
	if len(key) == 0 {
		return invalidArgument("key is empty")
	}
	if len(key) > n.cfg.MaxKeySize {
		return invalidArgument(fmt.Sprintf("key is %d bytes, over the limit of %d bytes (max key size)", len(key), n.cfg.MaxKeySize))
	}
	return nil
}

func consistencyFromPB(c *kvpb.Consistency) (replication.Consistency, error) {
	switch c.GetLevel() {
	case kvpb.Level_LEVEL_UNSPECIFIED:
		if c.GetR() != 0 || c.GetW() != 0 {
			return replication.Consistency{}, invalidArgument("r and w are only valid with LEVEL_CUSTOM")
		}
		return replication.Consistency{}, nil
	case kvpb.Level_LEVEL_ONE, kvpb.Level_LEVEL_QUORUM, kvpb.Level_LEVEL_ALL, kvpb.Level_LEVEL_LINEARIZABLE:
		// api.Level numbers the levels as the protobuf enum does.
		return replication.Consistency{Level: quorum.Level(c.GetLevel())}, nil
	case kvpb.Level_LEVEL_CUSTOM:
		if c.GetR() == 0 || c.GetW() == 0 {
			return replication.Consistency{}, invalidArgument("LEVEL_CUSTOM needs both r and w of at least 1")
		}
		return replication.Consistency{Level: quorum.Custom, R: int(c.GetR()), W: int(c.GetW())}, nil
	}
	return replication.Consistency{}, invalidArgument(fmt.Sprintf("unknown consistency level %d", c.GetLevel()))
}

// conditionFromPB validates a write's condition. A conditional write always
// runs through Paxos, that is at the linearizable level: the request may
// leave the level unspecified (whatever the keyspace's default) or ask for
// LEVEL_LINEARIZABLE; any other level is refused rather than silently
// upgraded, since a caller who asked for `one` expects `one`'s costs.
func conditionFromPB(c *kvpb.Condition, cons replication.Consistency) (paxos.Condition, error) {
	if l := cons.Level; l != quorum.Default && l != quorum.Linearizable {
		return paxos.Condition{}, invalidArgument(fmt.Sprintf("a conditional write runs at the linearizable level; consistency level %v cannot be combined with a condition (leave it unspecified or ask for linearizable)", l))
	}
	switch c.GetKind() {
	case kvpb.Condition_IF_VERSION:
		v := replication.VersionFromPB(c.GetVersion())
		if v.IsZero() {
			return paxos.Condition{}, invalidArgument("condition IF_VERSION needs a version (a zero or missing version matches nothing; use IF_ABSENT for a key that must not exist)")
		}
		if len(c.GetValue()) > 0 {
			return paxos.Condition{}, invalidArgument("condition IF_VERSION takes a version, not a value")
		}
		return paxos.Condition{Kind: paxos.IfVersion, Version: v}, nil
	case kvpb.Condition_IF_ABSENT:
		if c.GetVersion() != nil || len(c.GetValue()) > 0 {
			return paxos.Condition{}, invalidArgument("condition IF_ABSENT takes no version and no value")
		}
		return paxos.Condition{Kind: paxos.IfAbsent}, nil
	case kvpb.Condition_IF_VALUE:
		if c.GetVersion() != nil {
			return paxos.Condition{}, invalidArgument("condition IF_VALUE takes a value, not a version")
		}
		return paxos.Condition{Kind: paxos.IfValue, Value: c.GetValue()}, nil
	}
	return paxos.Condition{}, invalidArgument(fmt.Sprintf("condition kind %v: want IF_VERSION, IF_ABSENT or IF_VALUE", c.GetKind()))
}

// condResultToPB returns a conditional write's version (when applied) and
// current record (when not).
func condResultToPB(res replication.CondResult) (*kvpb.Version, *kvpb.Current) {
	if res.Applied {
		return replication.VersionToPB(res.Record.Version), nil
	}
	cur := &kvpb.Current{Found: res.Found}
	if res.Found {
		cur.Value, cur.Version = res.Record.Value, replication.VersionToPB(res.Record.Version)
	}
	return nil, cur
}

// levelToPB converts a level for the wire: api.Level numbers the levels as
// the protobuf enum does.
func levelToPB(l quorum.Level) kvpb.Level {
	if !l.Known() {
		return kvpb.Level_LEVEL_UNSPECIFIED
	}
	return kvpb.Level(l)
}

func (n *Node) receipt(r replication.Receipt, required int) *kvpb.Receipt {
	return &kvpb.Receipt{
		Level:       levelToPB(r.Policy.Level),
		N:           uint32(r.Policy.N),
		Required:    uint32(required),
		Acked:       uint32(r.Acked),
		Coordinator: n.cfg.ID,
		Epoch:       r.Epoch,
		Repaired:    uint32(r.Repaired),
	}
}

// observe records a request's outcome and latency in the node's metrics.
func (n *Node) observe(op string, level quorum.Level, start time.Time, err error) {
	lv := level.String()
	n.metrics.requests.WithLabelValues(op, lv, status.Code(err).String()).Inc()
	n.metrics.latency.WithLabelValues(op, lv).Observe(time.Since(start).Seconds())
}

// kvServer implements the client API.
type kvServer struct {
	kvpb.UnimplementedKVServer
	n *Node
}

func (s kvServer) Get(ctx context.Context, req *kvpb.GetRequest) (_ *kvpb.GetResponse, err error) {
	release, err := s.n.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	if err := s.n.checkJoined(); err != nil {
		return nil, err
	}
	if err := s.n.validateKey(req.GetKeyspace(), req.GetKey()); err != nil {
		return nil, err
	}
	cons, err := consistencyFromPB(req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.n.knowKeyspace(ctx, req.GetKeyspace()); err != nil {
		return nil, err
	}
	if m := req.GetSessionMin(); m != nil {
		cons.MinVersion = replication.VersionFromPB(m)
	}
	res, err := s.n.coord.Get(ctx, req.GetKeyspace(), req.GetKey(), cons)
	s.n.observe("get", res.Policy.Level, start, err)
	if err != nil {
		return nil, dataStatus(req.GetKeyspace(), err)
	}
	resp := &kvpb.GetResponse{Found: res.Found, Receipt: s.n.receipt(res.Receipt, res.Policy.R)}
	if res.Found {
		resp.Value = res.Record.Value
	}
	if !res.Record.Version.IsZero() {
		resp.Version = replication.VersionToPB(res.Record.Version)
	}
	return resp, nil
}

func (s kvServer) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	release, err := s.n.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	if err := s.n.checkJoined(); err != nil {
		return nil, err
	}
	if err := s.n.validateKey(req.GetKeyspace(), req.GetKey()); err != nil {
		return nil, err
	}
	if len(req.GetValue()) > s.n.cfg.MaxValueSize {
		return nil, invalidArgument(fmt.Sprintf("value is %d bytes, over the limit of %d bytes (max value size)", len(req.GetValue()), s.n.cfg.MaxValueSize))
	}
	cons, err := consistencyFromPB(req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.n.knowKeyspace(ctx, req.GetKeyspace()); err != nil {
		return nil, err
	}
	cons.After = req.GetSessionAfter()
	if c := req.GetCondition(); c != nil {
		cond, err := conditionFromPB(c, cons)
		if err != nil {
			return nil, err
		}
		res, err := s.n.coord.CondPut(ctx, req.GetKeyspace(), req.GetKey(), req.GetValue(), cond, cons)
		s.n.observe("put", quorum.Linearizable, start, err)
		if err != nil {
			return nil, dataStatus(req.GetKeyspace(), err)
		}
		v, cur := condResultToPB(res)
		return &kvpb.PutResponse{Version: v, Applied: res.Applied, Current: cur, Receipt: s.n.receipt(res.Receipt, res.Policy.W)}, nil
	}
	v, r, err := s.n.coord.Put(ctx, req.GetKeyspace(), req.GetKey(), req.GetValue(), cons)
	s.n.observe("put", r.Policy.Level, start, err)
	if err != nil {
		return nil, dataStatus(req.GetKeyspace(), err)
	}
	return &kvpb.PutResponse{Version: replication.VersionToPB(v), Applied: true, Receipt: s.n.receipt(r, r.Policy.W)}, nil
}

func (s kvServer) Delete(ctx context.Context, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	release, err := s.n.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	if err := s.n.checkJoined(); err != nil {
		return nil, err
	}
	if err := s.n.validateKey(req.GetKeyspace(), req.GetKey()); err != nil {
		return nil, err
	}
	cons, err := consistencyFromPB(req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if err := s.n.knowKeyspace(ctx, req.GetKeyspace()); err != nil {
		return nil, err
	}
	cons.After = req.GetSessionAfter()
	if c := req.GetCondition(); c != nil {
		cond, err := conditionFromPB(c, cons)
		if err != nil {
			return nil, err
		}
		res, err := s.n.coord.CondDelete(ctx, req.GetKeyspace(), req.GetKey(), cond, cons)
		s.n.observe("delete", quorum.Linearizable, start, err)
		if err != nil {
			return nil, dataStatus(req.GetKeyspace(), err)
		}
		v, cur := condResultToPB(res)
		return &kvpb.DeleteResponse{Version: v, Applied: res.Applied, Current: cur, Receipt: s.n.receipt(res.Receipt, res.Policy.W)}, nil
	}
	v, r, err := s.n.coord.Delete(ctx, req.GetKeyspace(), req.GetKey(), cons)
	s.n.observe("delete", r.Policy.Level, start, err)
	if err != nil {
		return nil, dataStatus(req.GetKeyspace(), err)
	}
	return &kvpb.DeleteResponse{Version: replication.VersionToPB(v), Applied: true, Receipt: s.n.receipt(r, r.Policy.W)}, nil
}

// prefixEnd returns the smallest key greater than every key with the prefix,
// or nil when there is none (a prefix of 0xff bytes).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (s kvServer) Scan(ctx context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	release, err := s.n.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	if err := s.n.checkJoined(); err != nil {
		return nil, err
	}
	if err := validKeyspaceName(req.GetKeyspace()); err != nil {
		return nil, err
	}
	from, to := req.GetStart(), req.GetEnd()
	if p := req.GetPrefix(); len(p) > 0 {
		if len(to) > 0 {
			return nil, invalidArgument("scan takes either a prefix or an end bound, not both")
		}
		// A start with a prefix continues a prefix scan from next_start.
		if len(from) > 0 && !bytes.HasPrefix(from, p) {
			return nil, invalidArgument(fmt.Sprintf("scan start %q does not begin with the prefix %q", from, p))
		}
		if len(from) == 0 {
			from = p
		}
		to = prefixEnd(p)
	}
	for name, k := range map[string][]byte{"prefix": req.GetPrefix(), "start": from, "end": to} {
		if len(k) > s.n.cfg.MaxKeySize+1 {
			return nil, invalidArgument(fmt.Sprintf("scan %s is %d bytes, over the key limit of %d bytes", name, len(k), s.n.cfg.MaxKeySize))
		}
	}
	if len(to) > 0 && bytes.Compare(from, to) >= 0 {
		return nil, invalidArgument(fmt.Sprintf("scan range is empty: start %q is not before end %q", from, to))
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = s.n.cfg.DefaultScanLimit
	}
	if limit > s.n.cfg.MaxScanLimit {
		return nil, invalidArgument(fmt.Sprintf("scan limit %d is over the maximum of %d", limit, s.n.cfg.MaxScanLimit))
	}
	cons, err := consistencyFromPB(req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if cons.Level == quorum.Linearizable {
		// A scan reads many keys from a majority each, with no Paxos read
		// of any: calling that linearizable would be a lie.
		return nil, invalidArgument("a scan cannot be linearizable: scan at quorum or all, or read the keys one by one at linearizable")
	}
	var end []byte
	if len(to) > 0 {
		end = to
	}
	if err := s.n.knowKeyspace(ctx, req.GetKeyspace()); err != nil {
		return nil, err
	}
	res, err := s.n.coord.Scan(ctx, req.GetKeyspace(), from, end, limit, cons)
	s.n.observe("scan", res.Policy.Level, start, err)
	if err != nil {
		return nil, dataStatus(req.GetKeyspace(), err)
	}
	resp := &kvpb.ScanResponse{More: res.More, NextStart: res.NextStart, Receipt: s.n.receipt(res.Receipt, res.Policy.R)}
	for _, rec := range res.Records {
		resp.Items = append(resp.Items, &kvpb.KeyValue{Key: rec.Key, Value: rec.Value, Version: replication.VersionToPB(rec.Version)})
	}
	return resp, nil
}

// peerServer implements the replica API.
type peerServer struct {
	kvpb.UnimplementedPeerServer
	n *Node
}

func (s peerServer) Write(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	resp, err := s.n.replica.Write(ctx, req)
	return resp, toStatus(err)
}

func (s peerServer) Hint(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	resp, err := s.n.replica.Hint(ctx, req)
	return resp, toStatus(err)
}

func (s peerServer) Paxos(ctx context.Context, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error) {
	resp, err := s.n.replica.Paxos(ctx, req)
	return resp, toStatus(err)
}

// LazyCommits applies a peer stream message's lazy Paxos commits at once.
func (s peerServer) LazyCommits(ctx context.Context, reqs []*kvpb.PaxosRequest) error {
	return s.n.replica.LazyCommits(ctx, reqs)
}

func (s peerServer) Read(ctx context.Context, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	resp, err := s.n.replica.Read(ctx, req)
	return resp, toStatus(err)
}

func (s peerServer) Scan(ctx context.Context, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error) {
	resp, err := s.n.replica.Scan(ctx, req)
	return resp, toStatus(err)
}

// adminServer implements the administration API. Changes are proposed to
// the metadata log on its leader: a node that is not the leader forwards
// the request to it once.
type adminServer struct {
	kvpb.UnimplementedAdminServer
	n *Node
}

const forwardedHeader = "x-adaptkv-forwarded"

func defToPB(d KeyspaceDef) *kvpb.KeyspaceConfig {
	level, _ := parseLevel(d.Level)
	c := &kvpb.Consistency{Level: levelToPB(level)}
	if level == quorum.Custom {
		c.R, c.W = uint32(d.R), uint32(d.W)
	}
	out := &kvpb.KeyspaceConfig{
		Name: d.Name, ReplicationFactor: uint32(d.ReplicationFactor), DefaultConsistency: c,
		Epoch: d.Epoch, CreatedUnixMs: d.CreatedUnixMs, UpdatedUnixMs: d.UpdatedUnixMs,
	}
	if g := d.Adaptive; g != nil {
		floor := kvpb.Level_LEVEL_ONE
		if g.Floor == tuner.FloorQuorum {
			floor = kvpb.Level_LEVEL_QUORUM
		}
		out.Adaptive = &kvpb.AdaptiveGoal{
			MaxStale: g.MaxStale, Floor: floor, RfMin: uint32(g.MinRF), RfMax: uint32(g.MaxRF),
			LatencyTargetUs: uint64(g.ReadP99 / time.Microsecond), SessionFloor: g.Floor == tuner.FloorSession,
		}
	}
	return out
}

// keyspaceDefFrom validates a requested configuration against the cluster.
func (s adminServer) keyspaceDefFrom(name string, rf int, c *kvpb.Consistency) (KeyspaceDef, error) {
	if err := validKeyspaceName(name); err != nil {
		return KeyspaceDef{}, err
	}
	if rf < 1 {
		return KeyspaceDef{}, invalidArgument(fmt.Sprintf("replication factor %d: must be at least 1", rf))
	}
	if size := s.n.ringSize(); rf > size {
		return KeyspaceDef{}, invalidArgument(fmt.Sprintf("replication factor %d is larger than the cluster (%d nodes)", rf, size))
	}
	if rf > quorum.MaxReplicas {
		return KeyspaceDef{}, invalidArgument(fmt.Sprintf("replication factor %d is over the maximum of %d", rf, quorum.MaxReplicas))
	}
	cons, err := consistencyFromPB(c)
	if err != nil {
		return KeyspaceDef{}, err
	}
	def := KeyspaceDef{Name: name, ReplicationFactor: rf, Level: cons.Level.String()}
	if cons.Level == quorum.Default {
		def.Level = quorum.Quorum.String()
		cons.Level = quorum.Quorum
	}
	if _, err := quorum.Resolve(cons.Level, rf, cons.R, cons.W); err != nil {
		return KeyspaceDef{}, invalidArgument(fmt.Sprintf("keyspace %q: %v", name, err))
	}
	if cons.Level == quorum.Custom {
		def.R, def.W = cons.R, cons.W
	}
	return def, nil
}

func (s adminServer) CreateKeyspace(ctx context.Context, req *kvpb.CreateKeyspaceRequest) (*kvpb.KeyspaceResponse, error) {
	cons := req.GetDefaultConsistency()
	if req.GetAdaptive() != nil {
		if cons.GetLevel() != kvpb.Level_LEVEL_UNSPECIFIED {
			return nil, invalidArgument("an adaptive keyspace takes a goal, not a default consistency level")
		}
		rf := int(req.GetReplicationFactor())
		cons = &kvpb.Consistency{Level: kvpb.Level_LEVEL_CUSTOM, R: uint32(quorum.Majority(rf)), W: uint32(quorum.Majority(rf))}
	}
	def, err := s.keyspaceDefFrom(req.GetName(), int(req.GetReplicationFactor()), cons)
	if err != nil {
		return nil, err
	}
	if a := req.GetAdaptive(); a != nil {
		g, err := goalFromPB(a, def.ReplicationFactor)
		if err != nil {
			return nil, err
		}
		def.Adaptive = &g
	}
	if resp, forwarded, err := s.forward(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.KeyspaceResponse, error) {
		return c.CreateKeyspace(fctx, req)
	}); forwarded {
		return resp, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := propose(pctx, s.n.raft, command{Op: "create", Keyspace: def, AtUnixMs: time.Now().UnixMilli()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.KeyspaceResponse{Keyspace: defToPB(out)}, nil
}

func (s adminServer) AlterKeyspace(ctx context.Context, req *kvpb.AlterKeyspaceRequest) (*kvpb.KeyspaceResponse, error) {
	if err := validKeyspaceName(req.GetName()); err != nil {
		return nil, err
	}
	cur, ok := s.n.meta.Def(req.GetName())
	if !ok {
		return nil, toStatus(fmt.Errorf("keyspace %q: %w", req.GetName(), replication.ErrKeyspaceNotFound))
	}
	rf := int(req.GetReplicationFactor())
	if rf != 0 && rf != cur.ReplicationFactor {
		// Changing N needs data streamed to new replicas before they count
		// in a read quorum. The tuner does that for adaptive keyspaces
		// (rollout.Executor.Apply, within the goal's MinRF..MaxRF); a user's change
		// would need the same steps, which alter does not take.
		return nil, invalidArgument(fmt.Sprintf("keyspace %q: changing the replication factor (%d to %d) is not supported yet", req.GetName(), cur.ReplicationFactor, rf))
	}
	cons := req.GetDefaultConsistency()
	if cons != nil && cur.Adaptive != nil && req.GetAdaptive() == nil {
		return nil, invalidArgument(fmt.Sprintf("keyspace %q is adaptive: change its goal, or make it static by giving a level with no goal is not supported", req.GetName()))
	}
	if cons == nil {
		level, _ := parseLevel(cur.Level)
		cons = &kvpb.Consistency{Level: levelToPB(level), R: uint32(cur.R), W: uint32(cur.W)}
	}
	def, err := s.keyspaceDefFrom(req.GetName(), cur.ReplicationFactor, cons)
	if err != nil {
		return nil, err
	}
	if a := req.GetAdaptive(); a != nil {
		if cur.Adaptive == nil {
			return nil, invalidArgument(fmt.Sprintf("keyspace %q has a fixed level; creating it adaptive is the way to get a goal", req.GetName()))
		}
		g, err := goalFromPB(a, cur.ReplicationFactor)
		if err != nil {
			return nil, err
		}
		def.Adaptive = &g
		def.Level, def.R, def.W = "", 0, 0 // the tuner keeps R and W
	}
	if resp, forwarded, err := s.forward(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.KeyspaceResponse, error) {
		return c.AlterKeyspace(fctx, req)
	}); forwarded {
		return resp, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := propose(pctx, s.n.raft, command{Op: "alter", Keyspace: def, AtUnixMs: time.Now().UnixMilli()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.KeyspaceResponse{Keyspace: defToPB(out)}, nil
}

// forward sends an admin change to the metadata leader when this node is
// not it. It reports forwarded=false when this node should propose itself.
// On success it waits until this node has applied the change too, so that a
// client reading back through this node sees it.
func (s adminServer) forward(ctx context.Context, call func(kvpb.AdminClient, context.Context) (*kvpb.KeyspaceResponse, error)) (*kvpb.KeyspaceResponse, bool, error) {
	_, leaderID := s.n.raft.LeaderWithID()
	if string(leaderID) == s.n.cfg.ID {
		return nil, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedHeader)) > 0 {
		return nil, true, toStatus(fmt.Errorf("%w: this node was told it leads, and it does not", ErrNoLeader))
	}
	if leaderID == "" {
		return nil, true, toStatus(fmt.Errorf("%w: try again once the metadata voters have elected one", ErrNoLeader))
	}
	c, err := s.n.transport.adminClient(string(leaderID))
	if err != nil {
		return nil, true, toStatus(fmt.Errorf("%w: leader %s unreachable: %w", ErrNoLeader, leaderID, err))
	}
	resp, err := call(c, metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.n.cfg.ID))
	if err != nil {
		return nil, true, err
	}
	if err := s.n.meta.WaitForIndex(ctx, resp.GetKeyspace().GetEpoch()); err != nil {
		return nil, true, toStatus(err)
	}
	return resp, true, nil
}

func (s adminServer) DescribeKeyspace(ctx context.Context, req *kvpb.DescribeKeyspaceRequest) (*kvpb.KeyspaceResponse, error) {
	if err := validKeyspaceName(req.GetName()); err != nil {
		return nil, err
	}
	d, ok := s.n.meta.Def(req.GetName())
	if !ok {
		// A keyspace created a moment ago through another node may not be
		// applied here yet: give the metadata log a moment, as the data
		// path does.
		if _, err := s.n.coord.WaitForKeyspace(ctx, req.GetName()); err != nil {
			return nil, toStatus(err)
		}
		d, _ = s.n.meta.Def(req.GetName())
	}
	return &kvpb.KeyspaceResponse{Keyspace: defToPB(d)}, nil
}

func (s adminServer) ListKeyspaces(ctx context.Context, req *kvpb.ListKeyspacesRequest) (*kvpb.ListKeyspacesResponse, error) {
	resp := &kvpb.ListKeyspacesResponse{}
	for _, d := range s.n.meta.Defs() {
		resp.Keyspaces = append(resp.Keyspaces, defToPB(d))
	}
	return resp, nil
}

func memberStateToPB(s membership.State) kvpb.MemberState {
	switch s {
	case membership.Alive:
		return kvpb.MemberState_MEMBER_ALIVE
	case membership.Dead:
		return kvpb.MemberState_MEMBER_DEAD
	case membership.Left:
		return kvpb.MemberState_MEMBER_LEFT
	}
	return kvpb.MemberState_MEMBER_STATE_UNSPECIFIED
}

func (s adminServer) ClusterStatus(ctx context.Context, req *kvpb.ClusterStatusRequest) (*kvpb.ClusterStatusResponse, error) {
	v := s.n.members.View()
	rg := topology{s.n}.Ring()
	own := rg.Ownership()
	topo := s.n.meta.Topology()
	roles := s.n.raftRoles()
	_, leader := s.n.raft.LeaderWithID()
	resp := &kvpb.ClusterStatusResponse{
		NodeId:         s.n.cfg.ID,
		MetadataLeader: string(leader),
		MetadataIndex:  s.n.meta.applied.Load(),
		Vnodes:         uint32(rg.Vnodes()),
		HintsPending:   uint64(s.n.hints.Pending()),
		TopologyEpoch:  topo.Epoch,
		Stream:         s.n.streamStatus(),
		Security:       s.n.securityStatus(),
	}
	for _, m := range v.Members {
		flagged, why := s.n.flagReason(m.ID)
		resp.Members = append(resp.Members, &kvpb.Member{Flagged: flagged, FlagReason: why,
			Id: m.ID, Number: s.n.memberNumber(m.ID), GrpcAddr: m.GRPCAddr, GossipAddr: m.GossipAddr,
			RaftAddr: m.RaftAddr, HttpAddr: m.HTTPAddr, Zone: m.Zone,
			State: memberStateToPB(m.State), RaftRole: roles[m.ID], RingOwnership: own[m.ID],
			RingState: string(ringStateOf(topo, m.ID)), Draining: m.Draining,
		})
	}
	return resp, nil
}

// securityStatus is how this node protects its connections, for status.
func (n *Node) securityStatus() *kvpb.NodeSecurity {
	m := n.cfg.Security
	if m == nil {
		return &kvpb.NodeSecurity{}
	}
	return &kvpb.NodeSecurity{Secure: true, CertNotAfterUnix: m.NotAfter().Unix(), CaNotAfterUnix: m.CANotAfter().Unix()}
}

// MetadataReadIndex answers on the metadata leader only (see lease.go).
func (s adminServer) MetadataReadIndex(ctx context.Context, req *kvpb.MetadataReadIndexRequest) (*kvpb.MetadataReadIndexResponse, error) {
	index, err := s.n.localReadIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.MetadataReadIndexResponse{Index: index, Leader: s.n.cfg.ID}, nil
}

func (s adminServer) LocalGet(ctx context.Context, req *kvpb.LocalGetRequest) (*kvpb.LocalGetResponse, error) {
	if err := s.n.validateKey(req.GetKeyspace(), req.GetKey()); err != nil {
		return nil, err
	}
	rec, ok, err := s.n.replica.LocalGet(req.GetKeyspace(), req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvpb.LocalGetResponse{NodeId: s.n.cfg.ID, Found: ok}
	if ok {
		resp.Tombstone = rec.Tombstone
		resp.Value = rec.Value
		resp.Version = replication.VersionToPB(rec.Version)
	}
	return resp, nil
}

// goalFromPB validates an adaptive goal for a keyspace of replication
// factor rf.
func goalFromPB(a *kvpb.AdaptiveGoal, rf int) (tuner.Goal, error) {
	g := tuner.Goal{MaxStale: a.GetMaxStale(), MinRF: int(a.GetRfMin()), MaxRF: int(a.GetRfMax()), MinW: 1,
		ReadP99: time.Duration(a.GetLatencyTargetUs()) * time.Microsecond}
	switch a.GetFloor() {
	case kvpb.Level_LEVEL_UNSPECIFIED, kvpb.Level_LEVEL_ONE:
		g.Floor = tuner.FloorOne
	case kvpb.Level_LEVEL_QUORUM:
		g.Floor = tuner.FloorQuorum
	default:
		return tuner.Goal{}, invalidArgument(fmt.Sprintf("adaptive floor %v: want one or quorum", a.GetFloor()))
	}
	if a.GetSessionFloor() {
		if g.Floor != tuner.FloorOne {
			return tuner.Goal{}, invalidArgument(fmt.Sprintf("adaptive floor session with floor %v: the session floor stands for the floor (leave it unset or one)", a.GetFloor()))
		}
		g.Floor = tuner.FloorSession
	}
	if g.MinRF == 0 {
		g.MinRF = rf
	}
	if g.MaxRF == 0 {
		g.MaxRF = rf
	}
	if rf < g.MinRF || rf > g.MaxRF {
		return tuner.Goal{}, invalidArgument(fmt.Sprintf("replication factor %d is outside the goal's bounds %d..%d", rf, g.MinRF, g.MaxRF))
	}
	if err := g.Validate(); err != nil {
		return tuner.Goal{}, invalidArgument(err.Error())
	}
	return g, nil
}

func (s adminServer) adaptive(name string) (KeyspaceDef, error) {
	if err := validKeyspaceName(name); err != nil {
		return KeyspaceDef{}, err
	}
	d, ok := s.n.meta.Def(name)
	if !ok {
		return KeyspaceDef{}, toStatus(fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound))
	}
	if d.Adaptive == nil {
		return KeyspaceDef{}, invalidArgument(fmt.Sprintf("keyspace %q has a fixed level (%s); only adaptive keyspaces are tuned", name, d.Level))
	}
	return d, nil
}

func (s adminServer) TunerSnapshot(ctx context.Context, req *kvpb.TunerSnapshotRequest) (*kvpb.TunerSnapshotResponse, error) {
	if _, err := s.adaptive(req.GetKeyspace()); err != nil {
		return nil, err
	}
	obs, _ := s.n.tuning.snapshot(req.GetKeyspace())
	b, err := json.Marshal(obs)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.TunerSnapshotResponse{ObservationJson: b}, nil
}

func (s adminServer) TunerExplain(ctx context.Context, req *kvpb.TunerExplainRequest) (*kvpb.TunerExplainResponse, error) {
	if _, err := s.adaptive(req.GetKeyspace()); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = 20
	}
	all := s.n.meta.Decisions(req.GetKeyspace())
	all = all[max(0, len(all)-limit):]
	resp := &kvpb.TunerExplainResponse{}
	for _, raw := range all {
		var d tuner.Decision
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, toStatus(fmt.Errorf("decode decision: %w", err))
		}
		resp.DecisionsJson = append(resp.DecisionsJson, string(raw))
		resp.DecisionsText = append(resp.DecisionsText, tuner.FormatDecision(d, 6))
	}
	return resp, nil
}

func (s adminServer) TunerWhatIf(ctx context.Context, req *kvpb.TunerWhatIfRequest) (*kvpb.TunerWhatIfResponse, error) {
	d, err := s.adaptive(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	if leader := s.n.MetadataLeader(); leader != s.n.cfg.ID && leader != "" {
		if md, ok := metadata.FromIncomingContext(ctx); !ok || len(md.Get(forwardedHeader)) == 0 {
			if c, err := s.n.transport.adminClient(leader); err == nil {
				return c.TunerWhatIf(metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.n.cfg.ID), req)
			}
		}
	}
	reports, err := s.n.tuning.whatIf(ctx, d)
	if err != nil {
		return nil, withReason(codes.FailedPrecondition, api.ReasonNoObservations, fmt.Sprintf("keyspace %q: %v (send it some traffic first)", d.Name, err), nil)
	}
	b, err := json.Marshal(reports)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.TunerWhatIfResponse{CandidatesJson: string(b), Text: tuner.FormatWhatIf(reports, policyOf(d))}, nil
}

func registerServices(gs *grpc.Server, n *Node) {
	kvpb.RegisterKVServer(gs, kvServer{n: n})
	kvpb.RegisterPeerServer(gs, peerServer{n: n})
	kvpb.RegisterAdminServer(gs, adminServer{n: n})
}
