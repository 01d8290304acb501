package client

import (
	"context"
	"errors"
	"math"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// validate checks spec and converts it for the wire.
func (s KeyspaceSpec) validate(op string) (uint32, *kvpb.Consistency, *Error) {
	bad := func(format string, args ...any) (uint32, *kvpb.Consistency, *Error) {
		return 0, nil, localError(op, codes.InvalidArgument, ReasonInvalidArgument, format, args...)
	}
	if s.ReplicationFactor < 0 || s.ReplicationFactor > math.MaxUint32 {
		return bad("replication factor %d is out of range", s.ReplicationFactor)
	}
	if s.Adaptive != nil {
		if s.Consistency != LevelDefault {
			return bad("an adaptive keyspace takes a goal, not a level (got %v)", s.Consistency)
		}
		if f := s.Adaptive.Floor; f != LevelDefault && f != One && f != Quorum {
			return bad("adaptive floor %v: want one or quorum", f)
		}
		if f := s.Adaptive.Floor; s.Adaptive.SessionFloor && f != LevelDefault && f != One {
			return bad("adaptive floor session stands for the floor: leave Floor unset or One (got %v)", f)
		}
	}
	switch s.Consistency {
	case LevelDefault, One, Quorum, All, Linearizable:
		if s.R != 0 || s.W != 0 {
			return bad("R and W are only used with Consistency: Custom (got %v with R=%d W=%d)", s.Consistency, s.R, s.W)
		}
		if s.Consistency == LevelDefault {
			return uint32(s.ReplicationFactor), nil, nil
		}
		return uint32(s.ReplicationFactor), &kvpb.Consistency{Level: levelToPB(s.Consistency)}, nil
	case Custom:
		if s.R < 1 || s.W < 1 || s.R > math.MaxUint32 || s.W > math.MaxUint32 {
			return bad("Consistency: Custom needs R and W of at least 1 (got R=%d W=%d)", s.R, s.W)
		}
		return uint32(s.ReplicationFactor), &kvpb.Consistency{Level: kvpb.Level_LEVEL_CUSTOM, R: uint32(s.R), W: uint32(s.W)}, nil
	}
	return bad("unknown consistency level %d", int(s.Consistency))
}

// CreateKeyspace creates a keyspace. It fails with ErrKeyspaceExists if the
// name is taken and with ErrNoLeader while the metadata group elects a
// leader (after retrying, since that failure changed nothing). After a
// timeout (ErrUnknownOutcome) the keyspace may or may not exist: check with
// DescribeKeyspace.
func (c *Client) CreateKeyspace(ctx context.Context, name string, spec KeyspaceSpec) (*Keyspace, error) {
	const op = "create_keyspace"
	rf, cons, e := spec.validate(op)
	if e != nil {
		return nil, e
	}
	req := &kvpb.CreateKeyspaceRequest{Name: name, ReplicationFactor: rf, DefaultConsistency: cons, Adaptive: spec.Adaptive.toPB()}
	return c.keyspaceCall(ctx, opWrite, op, c.adminWriteNodes, func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.KeyspaceResponse, error) {
		return a.CreateKeyspace(ctx, req, co...)
	})
}

// AlterKeyspace changes a keyspace's replication factor and default
// consistency; zero fields of spec keep the current values. Errors are as
// for CreateKeyspace, with ErrKeyspaceNotFound for a missing keyspace.
func (c *Client) AlterKeyspace(ctx context.Context, name string, spec KeyspaceSpec) (*Keyspace, error) {
	const op = "alter_keyspace"
	rf, cons, e := spec.validate(op)
	if e != nil {
		return nil, e
	}
	req := &kvpb.AlterKeyspaceRequest{Name: name, ReplicationFactor: rf, DefaultConsistency: cons, Adaptive: spec.Adaptive.toPB()}
	return c.keyspaceCall(ctx, opWrite, op, c.adminWriteNodes, func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.KeyspaceResponse, error) {
		return a.AlterKeyspace(ctx, req, co...)
	})
}

// DescribeKeyspace returns a keyspace's configuration, or
// ErrKeyspaceNotFound.
func (c *Client) DescribeKeyspace(ctx context.Context, name string) (*Keyspace, error) {
	const op = "describe_keyspace"
	req := &kvpb.DescribeKeyspaceRequest{Name: name}
	ks, err := c.keyspaceCall(ctx, opRead, op, c.anyNode, func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.KeyspaceResponse, error) {
		return a.DescribeKeyspace(ctx, req, co...)
	})
	if errors.Is(err, ErrKeyspaceNotFound) {
		c.setRF(name, 0)
	}
	return ks, err
}

func (c *Client) keyspaceCall(ctx context.Context, kind opKind, op string, nodes func() []string, call func(context.Context, kvpb.AdminClient, ...grpc.CallOption) (*kvpb.KeyspaceResponse, error)) (*Keyspace, error) {
	var resp *kvpb.KeyspaceResponse
	err := c.invoke(ctx, kind, op, c.pickFrom(op, nodes), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = call(ctx, kvpb.NewAdminClient(cc), co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	ks := keyspaceFromPB(resp.GetKeyspace())
	// Route the keyspace's keys from now on rather than after the next
	// refresh.
	c.setRF(ks.Name, ks.ReplicationFactor)
	return ks, nil
}

// ListKeyspaces returns every keyspace's configuration.
func (c *Client) ListKeyspaces(ctx context.Context) ([]*Keyspace, error) {
	const op = "list_keyspaces"
	var resp *kvpb.ListKeyspacesResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).ListKeyspaces(ctx, &kvpb.ListKeyspacesRequest{}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Keyspace, 0, len(resp.GetKeyspaces()))
	for _, k := range resp.GetKeyspaces() {
		out = append(out, keyspaceFromPB(k))
	}
	return out, nil
}

// ClusterStatus returns the cluster's members and metadata state as one node
// sees it; the client also uses the answer to update its routing.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	const op = "cluster_status"
	var resp *kvpb.ClusterStatusResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).ClusterStatus(ctx, &kvpb.ClusterStatusRequest{}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.applyStatus(resp, nil)
	return clusterStatusFromPB(resp), nil
}

// LocalGet reads key from node nodeID's own storage, bypassing quorums and
// repair: it shows what that one replica holds, tombstones included, which
// is what an operator checking replication or repair wants. The request goes
// to that node's gRPC address from the cluster topology (even with
// DisableRouting), and fails with ErrNodeNotFound for an unknown node.
func (c *Client) LocalGet(ctx context.Context, nodeID, keyspace string, key []byte) (*LocalRecord, error) {
	const op = "local_get"
	if c.isClosed() {
		return nil, closedError(op)
	}
	addr, err := c.memberAddr(ctx, op, nodeID)
	if err != nil {
		return nil, err
	}
	req := &kvpb.LocalGetRequest{Keyspace: keyspace, Key: key}
	var resp *kvpb.LocalGetResponse
	only := func() []string { return []string{addr} }
	err = c.invoke(ctx, opRead, op, c.pickFrom(op, only), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).LocalGet(ctx, req, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	rec := &LocalRecord{
		Found:     resp.GetFound(),
		Tombstone: resp.GetTombstone(),
		Value:     resp.GetValue(),
		Version:   versionFromPB(resp.GetVersion()),
		NodeID:    resp.GetNodeId(),
	}
	if rec.NodeID != "" && rec.NodeID != nodeID {
		// The address now belongs to another node (a replacement that
		// reused it); its storage is not what was asked for.
		return nil, localError(op, codes.FailedPrecondition, "", "node %q answered at %s, where the topology has %q", rec.NodeID, addr, nodeID)
	}
	return rec, nil
}

// TunerExplanation is the tuner's record of one decision about an adaptive
// keyspace: Text for people, JSON (a tuner.Decision) for programs.
type TunerExplanation struct {
	Text string
	JSON string
}

// TunerExplain returns the most recent tuner decisions about an adaptive
// keyspace (limit 0: the server's default, 20), oldest first.
func (c *Client) TunerExplain(ctx context.Context, keyspace string, limit int) ([]TunerExplanation, error) {
	const op = "tuner_explain"
	var resp *kvpb.TunerExplainResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).TunerExplain(ctx, &kvpb.TunerExplainRequest{Keyspace: keyspace, Limit: uint32(max(limit, 0))}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]TunerExplanation, len(resp.GetDecisionsJson()))
	for i := range out {
		out[i].JSON = resp.GetDecisionsJson()[i]
		if i < len(resp.GetDecisionsText()) {
			out[i].Text = resp.GetDecisionsText()[i]
		}
	}
	return out, nil
}

// TunerWhatIf returns the model's predictions for every configuration the
// keyspace's goal allows, as they stand now: Text is a table for people,
// JSON a list of tuner.CandidateReport.
func (c *Client) TunerWhatIf(ctx context.Context, keyspace string) (text, jsonReport string, err error) {
	const op = "tuner_whatif"
	var resp *kvpb.TunerWhatIfResponse
	err = c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).TunerWhatIf(ctx, &kvpb.TunerWhatIfRequest{Keyspace: keyspace}, co...)
		return err
	})
	if err != nil {
		return "", "", err
	}
	return resp.GetText(), resp.GetCandidatesJson(), nil
}
