package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
)

// statusErr builds a status error as the server does: a code, a message and
// an ErrorInfo detail in the adaptkv domain (none when reason is empty).
func statusErr(t testing.TB, code codes.Code, reason, msg string, md map[string]string) error {
	t.Helper()
	return statusErrDomain(t, ErrorDomain, code, reason, msg, md)
}

func statusErrDomain(t testing.TB, domain string, code codes.Code, reason, msg string, md map[string]string) error {
	t.Helper()
	st := status.New(code, msg)
	if reason != "" {
		var err error
		st, err = st.WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

// reasonStatus is statusErr for server handlers, which have no testing.TB.
func reasonStatus(code codes.Code, reason, msg string, md map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason, Metadata: md})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

var sentinels = map[string]error{
	"ErrInvalidArgument":  ErrInvalidArgument,
	"ErrKeyspaceNotFound": ErrKeyspaceNotFound,
	"ErrKeyspaceExists":   ErrKeyspaceExists,
	"ErrUnavailable":      ErrUnavailable,
	"ErrUnknownOutcome":   ErrUnknownOutcome,
	"ErrTimeout":          ErrTimeout,
	"ErrNoLeader":         ErrNoLeader,
	"ErrNodeNotFound":     ErrNodeNotFound,
	"ErrClosed":           ErrClosed,
	"ErrNoEndpoints":      ErrNoEndpoints,
}

func TestStatusMapping(t *testing.T) {
	quorumMD := map[string]string{"acked": "1", "required": "2"}
	aliveMD := map[string]string{"alive": "1", "required": "2"}
	tests := []struct {
		name      string
		domain    string // default ErrorDomain
		code      codes.Code
		reason    string
		msg       string
		md        map[string]string
		kind      opKind
		sent      bool
		ctxErr    error    // the caller's context error after the call
		want      []string // sentinels that must match; all others must not
		retry     bool
		wantCause error
	}{
		{name: "invalid argument write", code: codes.InvalidArgument, reason: ReasonInvalidArgument, msg: "R 4 exceeds N 3",
			kind: opWrite, sent: true, want: []string{"ErrInvalidArgument"}},
		{name: "invalid argument read", code: codes.InvalidArgument, reason: ReasonInvalidArgument, msg: "empty key",
			kind: opRead, sent: true, want: []string{"ErrInvalidArgument"}},
		{name: "keyspace not found read", code: codes.NotFound, reason: ReasonKeyspaceNotFound, msg: `keyspace "x" not found`,
			kind: opRead, sent: true, want: []string{"ErrKeyspaceNotFound"}},
		{name: "keyspace not found write", code: codes.NotFound, reason: ReasonKeyspaceNotFound, msg: `keyspace "x" not found`,
			kind: opWrite, sent: true, want: []string{"ErrKeyspaceNotFound"}},
		{name: "bare not found is a keyspace", code: codes.NotFound, msg: "not found",
			kind: opRead, sent: true, want: []string{"ErrKeyspaceNotFound"}},
		{name: "node not found is not a keyspace", code: codes.NotFound, reason: ReasonNodeNotFound, msg: `node "n9"`,
			kind: opRead, sent: true, want: []string{"ErrNodeNotFound"}},
		{name: "keyspace exists", code: codes.AlreadyExists, reason: ReasonKeyspaceExists, msg: `keyspace "x" exists`,
			kind: opWrite, sent: true, want: []string{"ErrKeyspaceExists"}},
		{name: "not enough replicas write is definite", code: codes.Unavailable, reason: ReasonNotEnoughReplicas, md: aliveMD,
			msg:  "write: not enough replicas alive: 1 alive, 2 required",
			kind: opWrite, sent: true, want: []string{"ErrUnavailable"}, retry: true},
		{name: "not enough replicas read", code: codes.Unavailable, reason: ReasonNotEnoughReplicas, md: aliveMD,
			kind: opRead, sent: true, want: []string{"ErrUnavailable"}, retry: true},
		{name: "quorum not reached write is unknown", code: codes.Unavailable, reason: ReasonQuorumNotReached, md: quorumMD,
			msg:  "quorum not reached: 1 of 2 replicas acknowledged",
			kind: opWrite, sent: true, want: []string{"ErrUnavailable", "ErrUnknownOutcome"}},
		{name: "quorum not reached read is plain", code: codes.Unavailable, reason: ReasonQuorumNotReached, md: quorumMD,
			kind: opRead, sent: true, want: []string{"ErrUnavailable"}, retry: true},
		{name: "stale epoch write is unknown", code: codes.Unavailable, reason: ReasonStaleEpoch,
			kind: opWrite, sent: true, want: []string{"ErrUnavailable", "ErrUnknownOutcome"}},
		{name: "stale epoch read", code: codes.Unavailable, reason: ReasonStaleEpoch,
			kind: opRead, sent: true, want: []string{"ErrUnavailable"}, retry: true},
		{name: "server deadline write", code: codes.DeadlineExceeded, msg: "context deadline exceeded",
			kind: opWrite, sent: true, want: []string{"ErrTimeout", "ErrUnknownOutcome"}},
		{name: "server deadline read", code: codes.DeadlineExceeded,
			kind: opRead, sent: true, want: []string{"ErrTimeout"}, retry: true},
		{name: "own deadline after sending write", code: codes.DeadlineExceeded, ctxErr: context.DeadlineExceeded,
			kind: opWrite, sent: true, want: []string{"ErrTimeout", "ErrUnknownOutcome"}, wantCause: context.DeadlineExceeded},
		{name: "own deadline before sending write", code: codes.DeadlineExceeded, ctxErr: context.DeadlineExceeded,
			kind: opWrite, sent: false, want: []string{"ErrTimeout"}, wantCause: context.DeadlineExceeded},
		{name: "own deadline read", code: codes.DeadlineExceeded, ctxErr: context.DeadlineExceeded,
			kind: opRead, sent: true, want: []string{"ErrTimeout"}, wantCause: context.DeadlineExceeded},
		{name: "own cancel after sending write", code: codes.Canceled, ctxErr: context.Canceled,
			kind: opWrite, sent: true, want: []string{"ErrUnknownOutcome"}, wantCause: context.Canceled},
		{name: "no leader", code: codes.FailedPrecondition, reason: ReasonNoMetadataLeader, msg: "no metadata leader",
			kind: opWrite, sent: true, want: []string{"ErrNoLeader"}, retry: true},
		{name: "connection never made write", code: codes.Unavailable, msg: "connection refused",
			kind: opWrite, sent: false, want: []string{"ErrUnavailable"}, retry: true},
		{name: "connection lost after sending write", code: codes.Unavailable, msg: "error reading from server: EOF",
			kind: opWrite, sent: true, want: []string{"ErrUnavailable", "ErrUnknownOutcome"}},
		{name: "connection lost read", code: codes.Unavailable, msg: "error reading from server: EOF",
			kind: opRead, sent: true, want: []string{"ErrUnavailable"}, retry: true},
		{name: "internal write is unknown", code: codes.Internal, msg: "panic",
			kind: opWrite, sent: true, want: []string{"ErrUnknownOutcome"}},
		{name: "internal read", code: codes.Internal, msg: "panic",
			kind: opRead, sent: true},
		{name: "foreign domain reason ignored", domain: "example.com", code: codes.Unavailable, reason: ReasonNotEnoughReplicas,
			kind: opWrite, sent: true, want: []string{"ErrUnavailable", "ErrUnknownOutcome"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			domain := tt.domain
			if domain == "" {
				domain = ErrorDomain
			}
			raw := statusErrDomain(t, domain, tt.code, tt.reason, tt.msg, tt.md)
			err := error(toError("op", tt.kind, raw, tt.sent, tt.ctxErr))

			want := make(map[string]bool)
			for _, w := range tt.want {
				want[w] = true
			}
			for name, s := range sentinels {
				if got := errors.Is(err, s); got != want[name] {
					t.Errorf("errors.Is(err, %s) = %v, want %v (err: %v)", name, got, want[name], err)
				}
			}
			if got := retryable(tt.kind, err); got != tt.retry {
				t.Errorf("retryable(%v) = %v, want %v", tt.kind, got, tt.retry)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("errors.Is(err, %v) = false", tt.wantCause)
			}
			if got := status.Code(err); got != tt.code {
				t.Errorf("status.Code = %v, want %v", got, tt.code)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Error() = %q, want the server's message %q in it", err, tt.msg)
			}
			if tt.kind == opRead && errors.Is(err, ErrUnknownOutcome) {
				t.Error("a read must never be ErrUnknownOutcome")
			}
		})
	}
}

func TestStatusMappingMetadata(t *testing.T) {
	raw := statusErr(t, codes.Unavailable, ReasonQuorumNotReached, "quorum not reached: 1 of 2 replicas acknowledged",
		map[string]string{"acked": "1", "required": "2"})
	e := toError("put", opWrite, raw, true, nil)
	if e.Acked != 1 || e.Required != 2 || e.Reason != ReasonQuorumNotReached || !e.Unknown {
		t.Errorf("got %+v", e)
	}
	want := "client: put: quorum not reached: 1 of 2 replicas acknowledged (Unavailable, QUORUM_NOT_REACHED; outcome unknown: the write may have been applied)"
	if e.Error() != want {
		t.Errorf("Error() =\n%q, want\n%q", e.Error(), want)
	}

	raw = statusErr(t, codes.Unavailable, ReasonNotEnoughReplicas, "not enough replicas alive: 1 alive, 3 required",
		map[string]string{"alive": "1", "required": "3"})
	e = toError("delete", opWrite, raw, true, nil)
	if e.Alive != 1 || e.Required != 3 || e.Unknown {
		t.Errorf("got %+v", e)
	}

	var target *Error
	if !errors.As(error(e), &target) || target.Op != "delete" {
		t.Errorf("errors.As failed: %v", target)
	}
}

func TestRetryableNonClientErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("other"), context.DeadlineExceeded} {
		if retryable(opRead, err) || retryable(opWrite, err) {
			t.Errorf("retryable(%v) = true", err)
		}
	}
	if retryable(opRead, closedError("get")) {
		t.Error("a closed client must not retry")
	}
}

func TestReceiptCheck(t *testing.T) {
	if err := checkReceipt("put", opWrite, Receipt{Required: 2, Acked: 2}); err != nil {
		t.Fatal(err)
	}
	err := checkReceipt("put", opWrite, Receipt{Required: 2, Acked: 1, Coordinator: "n1"})
	if !errors.Is(err, ErrUnknownOutcome) || status.Code(err) != codes.Internal {
		t.Errorf("short write receipt: %v", err)
	}
	err = checkReceipt("get", opRead, Receipt{Required: 2, Acked: 1})
	if err == nil || errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("short read receipt: %v", err)
	}
}

// TestEveryServerReasonIsMapped checks that the SDK classifies every reason
// a server sends (api.Reasons) and holds no entry for a reason that no
// longer exists: a reason added to the API without a decision here would
// reach users as a word the SDK treats like a bare code.
func TestEveryServerReasonIsMapped(t *testing.T) {
	server := map[string]bool{}
	for _, r := range api.Reasons() {
		server[r] = true
		if _, ok := reasons[r]; !ok {
			t.Errorf("the server sends reason %s, which the client's reasons table does not map", r)
		}
	}
	for r, info := range reasons {
		if !server[r] && r != ReasonReceiptViolation {
			t.Errorf("the client maps reason %s, which no server sends (not in api.Reasons)", r)
		}
		if info.sentinel == nil {
			continue
		}
		e := &Error{Code: codes.Unknown, Reason: r}
		if !errors.Is(e, info.sentinel) {
			t.Errorf("an error with reason %s is not errors.Is %v", r, info.sentinel)
		}
	}
}
