package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
)

// Sentinel errors. Every error returned by a data or admin call is an
// *Error; match it against these with errors.Is, or use errors.As to read the
// details. New's errors wrap ErrNoEndpoints or ErrInvalidArgument. Several can match at once: a write that failed with
// QUORUM_NOT_REACHED is both ErrUnavailable and ErrUnknownOutcome.
var (
	// ErrInvalidArgument: the request can never succeed as given (bad
	// option, R or W larger than N, ...). Definite failure; retrying it is
	// pointless.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrKeyspaceNotFound: the keyspace does not exist. Definite failure.
	ErrKeyspaceNotFound = errors.New("client: keyspace not found")
	// ErrKeyspaceExists: CreateKeyspace named a keyspace that exists.
	// Definite failure.
	ErrKeyspaceExists = errors.New("client: keyspace already exists")
	// ErrUnavailable: the cluster could not serve the request now: too few
	// replicas alive or answering, or no node reachable. On its own it says
	// nothing about whether a write happened; check ErrUnknownOutcome.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrUnknownOutcome: a write was sent and it is not known whether it was
	// applied. Some replicas may hold it, and read repair and hinted handoff
	// may spread it later, so it can become visible at any time. It is never
	// reported for a definite failure and never for a read. See the package
	// documentation for how to handle it.
	ErrUnknownOutcome = errors.New("client: outcome unknown")
	// ErrTimeout: the deadline passed, the server's or the caller's. For a
	// write that was sent it comes with ErrUnknownOutcome.
	ErrTimeout = errors.New("client: timeout")
	// ErrNoLeader: the metadata Raft group has no leader, so keyspace
	// changes cannot be committed now. Definite failure; nothing changed.
	ErrNoLeader = errors.New("client: no metadata leader")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrNodeNotFound: LocalGet named a node that is not a cluster member.
	ErrNodeNotFound = errors.New("client: node not found")
	// ErrNoEndpoints: Config.Endpoints is empty.
	ErrNoEndpoints = errors.New("client: no endpoints configured")
	// ErrOverloaded: the node had as many requests in flight as it admits
	// and refused this one at once (RESOURCE_EXHAUSTED, reason
	// OVERLOADED). Definite failure: nothing was done, so even a write may
	// be sent again. The client retries it after the node's retry-after
	// hint (Error.RetryAfter), on the key's next replica, as long as its
	// retry budget allows (see the package documentation); it is returned
	// when the retries ran out too.
	ErrOverloaded = errors.New("client: overloaded")
	// ErrSessionBehind: a read through a Session found no replica in reach
	// holding the session's version of the key or a newer one
	// (FAILED_PRECONDITION, reason SESSION_BEHIND), so it returned nothing
	// rather than data older than the session has seen. It is not retried:
	// another node would ask the same replicas. Retry after a backoff, once
	// the replica holding the version is back or the others caught up.
	ErrSessionBehind = errors.New("client: no replica is as new as the session")
	// ErrContended: a PutIf, DeleteIf or linearizable write lost every
	// Paxos round it tried to concurrent writes of the same key (ABORTED,
	// reason CONTENDED). Definite: nothing was written. The client retries
	// it with backoff as long as its retry budget allows, and returns it
	// when the retries ran out too; the caller may try again later.
	ErrContended = errors.New("client: too much contention on the key")
	// ErrUnauthenticated: the cluster did not know who the caller is: no
	// client certificate and no valid token, a wrong user or password at
	// login, or a token that expired or outlived its password
	// (UNAUTHENTICATED). Definite failure: nothing was done.
	ErrUnauthenticated = errors.New("client: unauthenticated")
	// ErrPermissionDenied: the caller is known but lacks the permission
	// the call needs (PERMISSION_DENIED); the message names the user, the
	// permission and the keyspace. Definite failure: nothing was done.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrUserNotFound and ErrUserExists: user management named a user
	// that does not exist, or creates one that does. Definite failures.
	ErrUserNotFound = errors.New("client: user not found")
	ErrUserExists   = errors.New("client: user already exists")
	// ErrNodeDraining: the node is draining before it stops (a restart)
	// and refused the request before doing anything (UNAVAILABLE, reason
	// NODE_DRAINING). Definite: even a write may be sent again. The client
	// retries it at once on another node and refreshes its topology, which
	// then routes around the draining node; it is returned only when the
	// retries ran out (it is also ErrUnavailable).
	ErrNodeDraining = errors.New("client: node draining")
)

// ErrorDomain is the google.rpc.ErrorInfo domain of adaptkv's errors. Details
// from other domains are ignored, since their reasons mean something else.
const ErrorDomain = api.ErrorDomain

// Reasons: the google.rpc.ErrorInfo reasons the server sends, found in
// Error.Reason. They are declared, with what each means, in the API package
// (github.com/adaptkv/adaptkv/api), which server and SDK share; these names
// stay for code that reads them from here. ReasonReceiptViolation is the
// client's own.
const (
	ReasonInvalidArgument   = api.ReasonInvalidArgument
	ReasonKeyspaceNotFound  = api.ReasonKeyspaceNotFound
	ReasonKeyspaceExists    = api.ReasonKeyspaceExists
	ReasonNotEnoughReplicas = api.ReasonNotEnoughReplicas
	ReasonQuorumNotReached  = api.ReasonQuorumNotReached
	ReasonNoMetadataLeader  = api.ReasonNoMetadataLeader
	// ReasonStaleEpoch (Unavailable): a replica knew a newer keyspace
	// configuration and the coordinator could not catch up in time. A
	// write that got it may have been stored by other replicas, so its
	// outcome is unknown; a read is retried.
	ReasonStaleEpoch = api.ReasonStaleEpoch
	// ReasonNodeNotFound (NotFound): no member has the given node ID.
	ReasonNodeNotFound = api.ReasonNodeNotFound
	// ReasonConfigUnconfirmed (Unavailable): the node could not confirm it
	// holds the current configuration of the keyspace (an adaptive keyspace
	// with a quorum floor) and sent nothing; another node may serve it.
	ReasonConfigUnconfirmed = api.ReasonConfigUnconfirmed
	// ReasonConfigLeaseLost (Unavailable): the node's configuration lease
	// ended while the operation was under way; a write's outcome is unknown.
	ReasonConfigLeaseLost = api.ReasonConfigLeaseLost
	// ReasonNodeNotReady (Unavailable): the node cannot coordinate writes
	// yet (it has not been assigned its node number); nothing was sent.
	ReasonNodeNotReady = api.ReasonNodeNotReady
	// ReasonOverloaded (ResourceExhausted): the node refused the request
	// because it had its maximum in flight; see ErrOverloaded.
	ReasonOverloaded = api.ReasonOverloaded
	// ReasonMetadataNotReady (Unavailable): the node did not know the
	// keyspace and could not yet tell whether it exists (it had just
	// started, or lost touch with the metadata leader). Definite failure,
	// retried like NOT_ENOUGH_REPLICAS.
	ReasonMetadataNotReady = api.ReasonMetadataNotReady
	// ReasonRepairIncomplete (Unavailable): RepairKeyspace's pass did not
	// cover every node it had to; the message names the node. A pass is
	// safe to repeat.
	ReasonRepairIncomplete = api.ReasonRepairIncomplete
	// ReasonNoObservations (FailedPrecondition): the tuner has seen no
	// traffic on the keyspace, so there is no decision to explain.
	ReasonNoObservations = api.ReasonNoObservations
	// ReasonReceiptViolation: the server reported success with a receipt
	// showing fewer replicas than required. That is a server bug; the client
	// refuses the result rather than pass on a weaker guarantee than asked.
	// No server sends it.
	ReasonReceiptViolation = "RECEIPT_VIOLATION"
	// ReasonSessionBehind (FailedPrecondition): see ErrSessionBehind.
	ReasonSessionBehind = api.ReasonSessionBehind
	// ReasonContended (Aborted): see ErrContended.
	ReasonContended = api.ReasonContended
	// ReasonOutcomeUnknown (Unknown): a PutIf, DeleteIf or linearizable
	// write proposed its record and it was neither chosen nor refused; a
	// later round may still apply it. errors.Is(err, ErrUnknownOutcome)
	// reports it; it is never retried (see PutIf).
	ReasonOutcomeUnknown = api.ReasonOutcomeUnknown
	// ReasonNodeDraining (Unavailable): see ErrNodeDraining.
	ReasonNodeDraining = api.ReasonNodeDraining
)

// reasonInfo is how the SDK reads one reason.
type reasonInfo struct {
	// definite: the server sends the reason only when it did nothing, so a
	// write that failed with it has a known outcome whatever the code.
	definite bool
	// sentinel is the error errors.Is matches for the reason, beyond what
	// its code matches (nil when the code says it all).
	sentinel error
}

// reasons maps every reason a server sends (api.Reasons) and the client's
// own; TestEveryServerReasonIsMapped keeps it complete, so a reason added to
// the API is classified here before it can reach a user as an unknown word.
var reasons = map[string]reasonInfo{
	ReasonInvalidArgument:   {definite: true},
	ReasonKeyspaceNotFound:  {definite: true, sentinel: ErrKeyspaceNotFound},
	ReasonKeyspaceExists:    {definite: true, sentinel: ErrKeyspaceExists},
	ReasonNotEnoughReplicas: {definite: true},
	ReasonQuorumNotReached:  {},
	// Not definite by itself: a change proposed just before the leader
	// lost its leadership may still commit (its code decides today).
	ReasonNoMetadataLeader:  {sentinel: ErrNoLeader},
	ReasonStaleEpoch:        {},
	ReasonNodeNotFound:      {definite: true, sentinel: ErrNodeNotFound},
	ReasonConfigUnconfirmed: {definite: true},
	ReasonConfigLeaseLost:   {},
	ReasonNodeNotReady:      {definite: true},
	ReasonOverloaded:        {definite: true, sentinel: ErrOverloaded},
	ReasonMetadataNotReady:  {definite: true},
	// A repair pass is not a write, so its outcome never matters; it is
	// safe to run again.
	ReasonRepairIncomplete: {},
	ReasonNoObservations:   {definite: true},
	ReasonSessionBehind:    {definite: true, sentinel: ErrSessionBehind},
	ReasonReceiptViolation: {},
	ReasonContended:        {definite: true, sentinel: ErrContended},
	// Never definite, so a write that fails with it has Unknown set, which
	// is what errors.Is(err, ErrUnknownOutcome) reports.
	ReasonOutcomeUnknown: {},
	ReasonNodeDraining:   {definite: true, sentinel: ErrNodeDraining},
}

// Error is a failed call. It wraps the gRPC status so that status.Code and
// status.FromError keep working on it.
type Error struct {
	// Op is the Client method: "get", "put", "create_keyspace", ...
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the adaptkv ErrorInfo reason (one of the Reason constants),
	// empty when the status carried none, for example a connection failure.
	Reason string
	// Message is the server's (or gRPC's) message; it names the problem.
	Message string
	// Acked and Required come from QUORUM_NOT_REACHED: how many replicas
	// acknowledged and how many were needed. Alive and Required come from
	// NOT_ENOUGH_REPLICAS. Zero when not reported.
	Acked, Alive, Required int
	// Unknown is true when the call was a write that was (or may have been)
	// sent and the outcome is not known; errors.Is(err, ErrUnknownOutcome)
	// reports it. Always false for reads and for definite failures.
	Unknown bool
	// RetryAfter is the server's hint of how long to wait before trying
	// again (google.rpc.RetryInfo), sent with OVERLOADED; zero when none.
	RetryAfter time.Duration
	// Addr is the gRPC address of the last node tried, if any.
	Addr string
	// Cause is the underlying error: the gRPC status error, the caller's
	// context error (so errors.Is(err, context.DeadlineExceeded) works), or
	// ErrClosed.
	Cause error

	st *status.Status
}

// Error returns "client: op: message (code, reason, node addr; outcome
// unknown ...)", leaving out the parts that do not apply.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("client: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	msg := e.Message
	if msg == "" {
		msg = e.Code.String()
	}
	b.WriteString(msg)
	b.WriteString(" (")
	b.WriteString(e.Code.String())
	if e.Reason != "" {
		b.WriteString(", ")
		b.WriteString(e.Reason)
	}
	if e.Addr != "" {
		b.WriteString(", node ")
		b.WriteString(e.Addr)
	}
	if e.Unknown {
		b.WriteString("; outcome unknown: the write may have been applied")
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns Cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is makes errors.Is match the sentinels that describe e.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalidArgument:
		return e.Code == codes.InvalidArgument
	case ErrKeyspaceNotFound:
		// A bare NotFound (no ErrorInfo) can only be a keyspace: a missing
		// key is GetResult.Found == false, not an error.
		if e.Code == codes.NotFound && e.Reason == "" && !strings.HasPrefix(e.Op, "user_") {
			return true
		}
	case ErrKeyspaceExists:
		if e.Code == codes.AlreadyExists && e.Reason == "" && !strings.HasPrefix(e.Op, "user_") {
			return true
		}
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrUnknownOutcome:
		return e.Unknown
	case ErrTimeout:
		return e.Code == codes.DeadlineExceeded
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrPermissionDenied:
		return e.Code == codes.PermissionDenied
	case ErrUserNotFound:
		return e.Code == codes.NotFound && e.Reason == "" && strings.HasPrefix(e.Op, "user_")
	case ErrUserExists:
		return e.Code == codes.AlreadyExists && e.Reason == "" && strings.HasPrefix(e.Op, "user_")
	}
	return target != nil && reasons[e.Reason].sentinel == target
}

// GRPCStatus returns the status e was built from, for status.FromError.
func (e *Error) GRPCStatus() *status.Status {
	if e.st != nil {
		return e.st
	}
	return status.New(e.Code, e.Message)
}

// opKind says whether a call may have changed state, which decides both the
// outcome semantics of its errors and whether it may be retried.
type opKind int

const (
	opRead opKind = iota
	opWrite
)

func (k opKind) String() string {
	if k == opWrite {
		return "write"
	}
	return "read"
}

// definiteCodes are the codes after which a write certainly did nothing:
// the server rejects these before touching data. Any other failure of a
// write that reached a server leaves the outcome unknown.
var definiteCodes = map[codes.Code]bool{
	codes.InvalidArgument:    true,
	codes.NotFound:           true,
	codes.AlreadyExists:      true,
	codes.FailedPrecondition: true,
	codes.PermissionDenied:   true,
	codes.Unauthenticated:    true,
	codes.Unimplemented:      true,
	codes.OutOfRange:         true,
	codes.ResourceExhausted:  true,
}

// toError converts a gRPC call error into an *Error.
//
// sent reports whether the request may have reached a server (gRPC created a
// stream for it); a request that never left the client is a definite failure
// whatever the code. ctxErr is the caller's context error after the call, so
// that the caller's own deadline or cancellation is told apart from the
// server's.
func toError(op string, kind opKind, err error, sent bool, ctxErr error) *Error {
	st, _ := status.FromError(err) // non-status errors become codes.Unknown
	e := &Error{Op: op, Code: st.Code(), Message: st.Message(), Cause: err, st: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() != ErrorDomain || e.Reason != "" {
				continue
			}
			e.Reason = d.GetReason()
			md := d.GetMetadata()
			e.Acked = atoi(md[api.MetaAcked])
			e.Alive = atoi(md[api.MetaAlive])
			e.Required = atoi(md[api.MetaRequired])
		case *errdetails.RetryInfo:
			if rd := d.GetRetryDelay(); rd.IsValid() && rd.AsDuration() > 0 {
				e.RetryAfter = rd.AsDuration()
			}
		}
	}
	if ctxErr != nil && (e.Code == codes.DeadlineExceeded || e.Code == codes.Canceled) {
		e.Cause = ctxErr
	}
	if kind == opWrite && sent {
		e.Unknown = !definiteCodes[e.Code] && !reasons[e.Reason].definite
	}
	return e
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// localError is a failure found by the client before sending anything, so it
// is always definite.
func localError(op string, code codes.Code, reason, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Op: op, Code: code, Reason: reason, Message: msg, st: status.New(code, msg)}
}

func closedError(op string) *Error {
	return &Error{Op: op, Code: codes.Canceled, Message: "client is closed", Cause: ErrClosed, st: status.New(codes.Canceled, "client is closed")}
}

// retryable reports whether a call of kind that failed with err may be sent
// again. Reads have no effect, so any failure that another node or a moment
// could cure is retried. A write is retried only when it certainly wrote
// nothing: a retry after an unknown outcome could apply it twice with two
// versions, overwriting a concurrent writer in between.
func retryable(kind opKind, err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	// The caller's deadline or cancellation, or Close: no time or no client
	// left to retry with.
	if errors.Is(e.Cause, context.DeadlineExceeded) || errors.Is(e.Cause, context.Canceled) || errors.Is(e.Cause, ErrClosed) {
		return false
	}
	if e.Reason == ReasonNoMetadataLeader || e.Reason == ReasonOverloaded || e.Reason == ReasonContended {
		// Rejected before the Raft log was touched, an election takes a
		// moment; or refused before anything was done, and the node (or
		// the key's next replica) has room again a moment later; or lost
		// its Paxos rounds with nothing written, and the backoff lets the
		// concurrent writers finish.
		return true
	}
	if kind == opWrite {
		return !e.Unknown && e.Code == codes.Unavailable
	}
	return e.Code == codes.Unavailable || e.Code == codes.DeadlineExceeded
}

// isConnectionError reports a failure to reach a node (no adaptkv reason),
// after which the topology is worth refreshing.
func isConnectionError(e *Error) bool {
	return e.Code == codes.Unavailable && e.Reason == ""
}
