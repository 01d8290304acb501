package node

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReplaceRetryable: a replacement asks again, rather than giving up
// and exiting, when the member it asked knows no metadata leader (the
// minority side of a partition: the Jepsen membership:replace nemesis with
// partition:halves made n6 exit with "replace refused: node: metadata log
// has no leader"), when gossip has not caught up, or when another change
// is finishing; it gives up on a refusal that will not pass.
func TestReplaceRetryable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"no leader", toStatus(fmt.Errorf("%w: try again once the metadata voters have elected one", ErrNoLeader)), true},
		{"leader unreachable", toStatus(fmt.Errorf("%w: leader n1 unreachable: %w", ErrNoLeader, errors.New("dial"))), true},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), true},
		{"dead one not yet dead", status.Error(codes.FailedPrecondition, "replace: n4 is alive; replace only a dead member"), true},
		{"one change at a time", status.Error(codes.FailedPrecondition, "replace: n5 is joining; one topology change at a time"), true},
		{"not on the ring", status.Error(codes.NotFound, "replace: n9 is not on the ring"), false},
		{"not normal", status.Error(codes.FailedPrecondition, "replace: n4 is left, not normal"), false},
	} {
		if got := replaceRetryable(tt.err); got != tt.want {
			t.Errorf("%s: replaceRetryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
