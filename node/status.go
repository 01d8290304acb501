package node

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/quorum"
)

// withReason builds an error status carrying a google.rpc.ErrorInfo in
// api.ErrorDomain. reason is one of the api.Reason constants: the SDK maps
// exactly those (api.Reasons), so a new reason is declared there first.
func withReason(code codes.Code, reason, msg string, meta map[string]string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: api.ErrorDomain, Metadata: meta}); err == nil {
		st = d
	}
	return st.Err()
}

func invalidArgument(msg string) error {
	return withReason(codes.InvalidArgument, api.ReasonInvalidArgument, msg, nil)
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
		meta := map[string]string{api.MetaRequired: strconv.Itoa(qe.Required)}
		if errors.Is(err, replication.ErrNotEnoughReplicas) {
			meta[api.MetaAlive] = strconv.Itoa(qe.Answered)
			return withReason(codes.Unavailable, api.ReasonNotEnoughReplicas, err.Error(), meta)
		}
		meta[api.MetaAcked] = strconv.Itoa(qe.Answered)
		return withReason(codes.Unavailable, api.ReasonQuorumNotReached, err.Error(), meta)
	case errors.As(err, &le):
		if le.Lost {
			return withReason(codes.Unavailable, api.ReasonConfigLeaseLost, err.Error(), nil)
		}
		return withReason(codes.Unavailable, api.ReasonConfigUnconfirmed, err.Error(), nil)
	case errors.Is(err, replication.ErrUnknownOutcome):
		return withReason(codes.Unknown, api.ReasonOutcomeUnknown, err.Error(), nil)
	case errors.Is(err, replication.ErrContended):
		return withReason(codes.Aborted, api.ReasonContended, err.Error(), nil)
	case errors.Is(err, replication.ErrSessionBehind):
		return withReason(codes.FailedPrecondition, api.ReasonSessionBehind, err.Error(), nil)
	case errors.Is(err, ErrNoNodeNumber):
		return withReason(codes.Unavailable, api.ReasonNodeNotReady, err.Error(), nil)
	case errors.Is(err, replication.ErrKeyspaceNotFound):
		return withReason(codes.NotFound, api.ReasonKeyspaceNotFound, err.Error(), nil)
	case errors.Is(err, ErrKeyspaceExists):
		return withReason(codes.AlreadyExists, api.ReasonKeyspaceExists, err.Error(), nil)
	case errors.Is(err, replication.ErrInvalidRequest), errors.Is(err, quorum.ErrInvalidPolicy):
		return invalidArgument(err.Error())
	case errors.Is(err, ErrTopologyChange), errors.Is(err, ErrCleanupRefused):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNoLeader):
		return withReason(codes.FailedPrecondition, api.ReasonNoMetadataLeader, err.Error(), nil)
	case errors.Is(err, replication.ErrStaleEpoch):
		return withReason(codes.Unavailable, api.ReasonStaleEpoch, err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
