package main

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
)

// A decommission or removal asked of a member that cannot reach the
// metadata leader (a partition cut it off) goes to the next member; any
// other refusal is the answer. The Jepsen membership nemesis found the CLI
// asking the same cut-off member again and again.
func TestNoLeaderThere(t *testing.T) {
	noLeader, err := status.New(codes.FailedPrecondition, "metadata log has no leader: try again once the metadata voters have elected one").
		WithDetails(&errdetails.ErrorInfo{Reason: api.ReasonNoMetadataLeader, Domain: "adaptkv"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"no metadata leader there", noLeader.Err(), true},
		{"unreachable", status.Error(codes.Unavailable, "connection refused"), true},
		{"timed out", status.Error(codes.DeadlineExceeded, "deadline exceeded"), true},
		{"alive, so not removable", status.Error(codes.FailedPrecondition, "remove n4: n4 is alive; decommission it instead"), false},
		{"unknown member", status.Error(codes.NotFound, "n9 is not on the ring"), false},
		{"too few would remain", status.Error(codes.FailedPrecondition, "decommission n3: 2 members would remain, fewer than N=3"), false},
	} {
		if got := noLeaderThere(tt.err); got != tt.want {
			t.Errorf("%s: noLeaderThere(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
