package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// HealthEvidence is what one window of the cluster's gray-failure detector
// showed about a node (replication/health.Evidence).
type HealthEvidence struct {
	Node string `json:"node"`
	// Op is the requests judged, "read" or "write" (judged apart: a
	// write's round trip includes an fsync).
	Op             string        `json:"op"`
	Samples        uint64        `json:"samples"`
	Latency        time.Duration `json:"latency_ns"`
	FailureRate    float64       `json:"failure_rate"`
	ClusterLatency time.Duration `json:"cluster_latency_ns"`
	LatencyLimit   time.Duration `json:"latency_limit_ns"`
	ClusterFailure float64       `json:"cluster_failure"`
	FailureLimit   float64       `json:"failure_limit"`
	// Verdict is "bad", "good" or "unknown" (too few samples).
	Verdict string `json:"verdict"`
	Streak  int    `json:"streak"`
}

// HealthDecision flags (Flag) or reinstates a node, with its reason and
// the window's evidence.
type HealthDecision struct {
	At       time.Time      `json:"at"`
	Node     string         `json:"node"`
	Flag     bool           `json:"flag"`
	Reason   string         `json:"reason"`
	Evidence HealthEvidence `json:"evidence"`
}

// HealthReport is the cluster's health as the answering node knows it.
type HealthReport struct {
	// NodeID answered; Leader is true when it leads the metadata log, whose
	// detector produced Evidence (empty elsewhere).
	NodeID  string
	Leader  bool
	Enabled bool
	// Flagged holds the decision that flagged each node flagged now.
	Flagged map[string]HealthDecision
	// Decisions are the recent health decisions, oldest first.
	Decisions []HealthDecision
	// Evidence is the detector's last window, one entry per ring member.
	Evidence []HealthEvidence
}

// Health returns the flagged nodes with their evidence and the recent
// health decisions, asking the metadata leader first (whose detector holds
// the last window's evidence).
func (c *Client) Health(ctx context.Context) (*HealthReport, error) {
	const op = "health"
	var resp *kvpb.HealthResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.adminWriteNodes), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).Health(ctx, &kvpb.HealthRequest{}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	r := &HealthReport{NodeID: resp.GetNodeId(), Leader: resp.GetLeader(), Enabled: resp.GetEnabled()}
	for _, f := range []struct {
		b []byte
		v any
	}{{resp.GetFlaggedJson(), &r.Flagged}, {resp.GetDecisionsJson(), &r.Decisions}, {resp.GetEvidenceJson(), &r.Evidence}} {
		if len(f.b) == 0 {
			continue
		}
		if err := json.Unmarshal(f.b, f.v); err != nil {
			return nil, fmt.Errorf("client: health report from %s undecodable: %w", r.NodeID, err)
		}
	}
	return r, nil
}
