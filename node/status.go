package node

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/quorum"
)

// Reasons carried in the google.rpc.ErrorInfo of every error status, so that
// clients branch on a stable word rather than on message text.
const (
	ReasonInvalidArgument   = "INVALID_ARGUMENT"
	ReasonKeyspaceNotFound  = "KEYSPACE_NOT_FOUND"
	ReasonKeyspaceExists    = "KEYSPACE_EXISTS"
	ReasonNotEnoughReplicas = "NOT_ENOUGH_REPLICAS"
	ReasonQuorumNotReached  = "QUORUM_NOT_REACHED"
	ReasonNoMetadataLeader  = "NO_METADATA_LEADER"
	ReasonStaleEpoch        = "STALE_EPOCH"
	ReasonNodeNotFound      = "NODE_NOT_FOUND"
	// ReasonConfigUnconfirmed: the node holds no configuration lease for a
	// fenced keyspace and sent nothing (replication.LeaseError).
	ReasonConfigUnconfirmed = "CONFIG_UNCONFIRMED"
	// ReasonConfigLeaseLost: the lease ended while the operation was under
	// way; a write's outcome is unknown.
	ReasonConfigLeaseLost = "CONFIG_LEASE_LOST"
	// ReasonNodeNotReady: the node cannot coordinate writes yet (it has no
	// node number); nothing was sent.
	ReasonNodeNotReady = "NODE_NOT_READY"
	// ReasonOverloaded (ResourceExhausted) refuses a client request past
	// the node's in-flight bound (Config.MaxInflight) before anything was
	// done; the status carries a google.rpc.RetryInfo hint.
	ReasonOverloaded = "OVERLOADED"
	// ReasonMetadataNotReady (Unavailable) refuses a request for a keyspace
	// this node does not know while it cannot tell whether the keyspace
	// exists: it has not caught up with the metadata log since it started,
	// or has lost touch with its leader. Nothing was done.
	ReasonMetadataNotReady = "METADATA_NOT_READY"
	errorDomain            = "adaptkv"
)

func withReason(code codes.Code, reason, msg string, meta map[string]string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta}); err == nil {
		st = d
	}
	return st.Err()
}

func invalidArgument(msg string) error {
	return withReason(codes.InvalidArgument, ReasonInvalidArgument, msg, nil)
}

// toStatus maps an internal error to the gRPC status the API promises.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var qe *replication.QuorumError
	var le *replication.LeaseError
	switch {
	case errors.As(err, &qe):
		meta := map[string]string{"required": strconv.Itoa(qe.Required)}
		if errors.Is(err, replication.ErrNotEnoughReplicas) {
			meta["alive"] = strconv.Itoa(qe.Answered)
			return withReason(codes.Unavailable, ReasonNotEnoughReplicas, err.Error(), meta)
		}
		meta["acked"] = strconv.Itoa(qe.Answered)
		return withReason(codes.Unavailable, ReasonQuorumNotReached, err.Error(), meta)
	case errors.As(err, &le):
		if le.Lost {
			return withReason(codes.Unavailable, ReasonConfigLeaseLost, err.Error(), nil)
		}
		return withReason(codes.Unavailable, ReasonConfigUnconfirmed, err.Error(), nil)
	case errors.Is(err, ErrNoNodeNumber):
		return withReason(codes.Unavailable, ReasonNodeNotReady, err.Error(), nil)
	case errors.Is(err, replication.ErrKeyspaceNotFound):
		return withReason(codes.NotFound, ReasonKeyspaceNotFound, err.Error(), nil)
	case errors.Is(err, ErrKeyspaceExists):
		return withReason(codes.AlreadyExists, ReasonKeyspaceExists, err.Error(), nil)
	case errors.Is(err, replication.ErrInvalidRequest), errors.Is(err, quorum.ErrInvalidPolicy):
		return invalidArgument(err.Error())
	case errors.Is(err, ErrNoLeader):
		return withReason(codes.FailedPrecondition, ReasonNoMetadataLeader, err.Error(), nil)
	case errors.Is(err, replication.ErrStaleEpoch):
		return withReason(codes.Unavailable, ReasonStaleEpoch, err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
