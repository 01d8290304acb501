package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
)

// memberJSON is a member in status output. HintsPending is nil when the
// member could not be asked (it is down, or did not answer in time).
type memberJSON struct {
	ID            string  `json:"id"`
	State         string  `json:"state"`
	RaftRole      string  `json:"raft_role"`
	RingOwnership float64 `json:"ring_ownership"`
	// RingState is the member's place on the ring in the metadata log.
	RingState    string  `json:"ring_state,omitempty"`
	HintsPending *uint64 `json:"hints_pending"`
	GRPCAddr     string  `json:"grpc_addr"`
	GossipAddr   string  `json:"gossip_addr"`
	RaftAddr     string  `json:"raft_addr"`
	HTTPAddr     string  `json:"http_addr"`
	Zone         string  `json:"zone,omitempty"`
	// Flagged: the health detector flagged the member as a gray failure;
	// FlagReason says why (see adaptkv doctor).
	Flagged    bool   `json:"flagged,omitempty"`
	FlagReason string `json:"flag_reason,omitempty"`
	// Security is how the member protects its connections, nil when it
	// could not be asked.
	Security *securityJSON `json:"security,omitempty"`
}

// securityJSON is a member's transport security in status output.
type securityJSON struct {
	// Secure is false for a node run --insecure.
	Secure       bool       `json:"secure"`
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
	CANotAfter   *time.Time `json:"ca_not_after,omitempty"`
}

func toSecurityJSON(s client.NodeSecurity) *securityJSON {
	if !s.Secure {
		return &securityJSON{}
	}
	return &securityJSON{Secure: true, CertNotAfter: &s.CertNotAfter, CANotAfter: &s.CANotAfter}
}

// memberInfo is what a member says about itself.
type memberInfo struct {
	hints    uint64
	security client.NodeSecurity
}

// statusJSON is the JSON output of status.
type statusJSON struct {
	AnsweredBy     string       `json:"answered_by"`
	MetadataLeader string       `json:"metadata_leader"`
	MetadataIndex  uint64       `json:"metadata_index"`
	Vnodes         int          `json:"vnodes"`
	Members        []memberJSON `json:"members"`
	// Stream is the topology change's stream, absent when none is in
	// progress.
	Stream *streamJSON `json:"stream,omitempty"`
}

// streamJSON is a topology change's stream in status output.
type streamJSON struct {
	Change         string  `json:"change"`
	Since          uint64  `json:"since"`
	Driver         string  `json:"driver,omitempty"`
	Live           bool    `json:"live"`
	Keyspace       string  `json:"keyspace,omitempty"`
	KeyspacesDone  int     `json:"keyspaces_done"`
	KeyspacesTotal int     `json:"keyspaces_total"`
	SourcesDone    int     `json:"sources_done"`
	SourcesTotal   int     `json:"sources_total"`
	RecordsScanned uint64  `json:"records_scanned"`
	BytesScanned   uint64  `json:"bytes_scanned"`
	RecordsPushed  uint64  `json:"records_pushed"`
	BytesPushed    uint64  `json:"bytes_pushed"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	RateLimit      int64   `json:"rate_limit,omitempty"`
	Resumes        int     `json:"resumes"`
	StartedUnixMs  int64   `json:"started_unix_ms,omitempty"`
	UpdatedUnixMs  int64   `json:"updated_unix_ms,omitempty"`
}

// infoByMember asks every alive member for the hints it holds and its
// security. Hints live on the coordinators that stored them, so the
// cluster's backlog is the sum over members, which no single node's
// ClusterStatus reports; each node knows only its own certificates. Each
// member is asked directly (routing disabled) and in parallel; one that
// does not answer is left out rather than failing the status.
func (a *app) infoByMember(ctx context.Context, st *client.ClusterStatus) map[string]memberInfo {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string]memberInfo{}
	)
	for _, m := range st.Members {
		if m.State != client.StateAlive || m.GRPCAddr == "" {
			continue
		}
		if m.ID == st.NodeID {
			out[m.ID] = memberInfo{st.HintsPending, st.Security}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.memberClient(ctx, m.GRPCAddr)
			if err != nil {
				return
			}
			defer c.Close()
			s, err := c.ClusterStatus(ctx)
			if err != nil || s.NodeID != m.ID {
				return
			}
			mu.Lock()
			out[m.ID] = memberInfo{s.HintsPending, s.Security}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// memberClient returns a client that talks to the node at addr only, for
// questions about that node itself (its hints, its applied metadata).
func (a *app) memberClient(ctx context.Context, addr string) (*client.Client, error) {
	dir, err := a.clientCertsDir()
	if err != nil {
		return nil, err
	}
	return client.New(ctx, client.Config{Endpoints: []string{addr}, DisableRouting: true, MaxRetries: -1,
		DialTimeout: min(a.timeout, 2*time.Second), RequestTimeout: min(a.timeout, 2*time.Second), CertsDir: dir, User: a.user})
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: members, states, Raft roles, ring ownership, pending hints",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			st, err := c.ClusterStatus(ctx)
			if err != nil {
				return err
			}
			info := a.infoByMember(ctx, st)
			out := statusJSON{AnsweredBy: st.NodeID, MetadataLeader: st.MetadataLeader, MetadataIndex: st.MetadataIndex, Vnodes: st.Vnodes, Members: []memberJSON{}}
			for _, m := range st.Members {
				mj := memberJSON{ID: m.ID, State: m.State, RaftRole: m.RaftRole, RingOwnership: m.RingOwnership, RingState: m.RingState,
					GRPCAddr: m.GRPCAddr, GossipAddr: m.GossipAddr, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Zone: m.Zone,
					Flagged: m.Flagged, FlagReason: m.FlagReason}
				if in, ok := info[m.ID]; ok {
					mj.HintsPending = &in.hints
					mj.Security = toSecurityJSON(in.security)
				}
				out.Members = append(out.Members, mj)
			}
			if ss := st.Stream; ss != nil {
				out.Stream = &streamJSON{Change: ss.Change, Since: ss.Since, Driver: ss.Driver, Live: ss.Live, Keyspace: ss.Keyspace,
					KeyspacesDone: ss.KeyspacesDone, KeyspacesTotal: ss.KeyspacesTotal, SourcesDone: ss.SourcesDone,
					SourcesTotal: ss.SourcesTotal, RecordsScanned: ss.RecordsScanned, BytesScanned: ss.BytesScanned,
					RecordsPushed: ss.RecordsPushed, BytesPushed: ss.BytesPushed, BytesPerSecond: ss.BytesPerSecond,
					RateLimit: ss.RateLimit, Resumes: ss.Resumes}
				if ss.Driver != "" {
					out.Stream.StartedUnixMs, out.Stream.UpdatedUnixMs = ss.Started.UnixMilli(), ss.Updated.UnixMilli()
				}
			}
			if a.json() {
				return a.printJSON(out)
			}
			return a.printStatus(out)
		},
	}
}

func (a *app) printStatus(s statusJSON) error {
	tw := a.table()
	fmt.Fprintln(tw, "NODE\tSTATE\tRING\tRAFT\tOWNERSHIP\tHINTS\tGRPC\tZONE\tSECURITY")
	var total uint64
	for _, m := range s.Members {
		hints := "?"
		if m.HintsPending != nil {
			hints = fmt.Sprint(*m.HintsPending)
			total += *m.HintsPending
		}
		state := m.State
		if m.Flagged {
			state += " FLAGGED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f%%\t%s\t%s\t%s\t%s\n", m.ID, state, dash(m.RingState), dash(m.RaftRole), 100*m.RingOwnership, hints, m.GRPCAddr, dash(m.Zone), securityText(m.Security))
	}
	tw.Flush()
	leader := s.MetadataLeader
	if leader == "" {
		leader = "none (keyspace changes are refused until one is elected)"
	}
	fmt.Fprintf(a.stdout, "metadata leader: %s (log index %d on %s)\nhints pending: %d\n", leader, s.MetadataIndex, s.AnsweredBy, total)
	if st := s.Stream; st != nil {
		fmt.Fprintln(a.stdout, streamLine(st))
	}
	for _, m := range s.Members {
		if m.Flagged {
			fmt.Fprintf(a.stdout, "FLAGGED %s: %s (reads ask it last; see adaptkv doctor)\n", m.ID, m.FlagReason)
		}
	}
	return nil
}

// securityText renders a member's security in one cell: "INSECURE" stands
// out, a secure node shows when its certificate expires.
func securityText(s *securityJSON) string {
	switch {
	case s == nil:
		return "?"
	case !s.Secure:
		return "INSECURE"
	case s.CertNotAfter == nil:
		return "secure"
	}
	return fmt.Sprintf("secure, cert expires %s (%s)", s.CertNotAfter.Format(time.DateOnly), untilText(time.Until(*s.CertNotAfter)))
}

// streamLine renders a topology change's stream in one line.
func streamLine(st *streamJSON) string {
	if st.Driver == "" {
		return fmt.Sprintf("streaming: %s (since index %d): not started", st.Change, st.Since)
	}
	src := "the last checkpoint"
	if st.Live {
		src = "live"
	}
	limit := "unlimited"
	if st.RateLimit > 0 {
		limit = fmt.Sprintf("%.1f MB/s", float64(st.RateLimit)/1e6)
	} else if !st.Live {
		limit = "?"
	}
	pct := 0.0
	if st.SourcesTotal > 0 {
		pct = 100 * float64(st.SourcesDone) / float64(st.SourcesTotal)
	}
	return fmt.Sprintf("streaming: %s by %s (%s): keyspace %s, %d/%d keyspaces, %d/%d sources (%.0f%%), "+
		"%d records (%.1f MB) scanned, %d records (%.1f MB) pushed, %.1f MB/s (limit %s), %d resumes",
		st.Change, st.Driver, src, dash(st.Keyspace), st.KeyspacesDone, st.KeyspacesTotal, st.SourcesDone, st.SourcesTotal, pct,
		st.RecordsScanned, float64(st.BytesScanned)/1e6, st.RecordsPushed, float64(st.BytesPushed)/1e6,
		st.BytesPerSecond/1e6, limit, st.Resumes)
}

// dash shows an empty table cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
