package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
)

const (
	// minRefreshGap limits refreshes triggered by errors, so that a burst
	// of failures (or calls naming a keyspace that does not exist) costs at
	// most two admin calls per gap.
	minRefreshGap = 500 * time.Millisecond
	// refreshFanout is how many nodes a background refresh asks at once:
	// enough that one hung node does not stall it, few enough that a large
	// cluster is not polled by every client on every node.
	refreshFanout = 3
)

// topology is the client's immutable view of the cluster; a change builds a
// new one and swaps the pointer, so the request path reads it without locks.
type topology struct {
	status     *ClusterStatus
	byID       map[string]Member
	aliveAddrs []string        // gRPC addresses of alive members, by member ID
	flagged    map[string]bool // gRPC addresses of flagged members (flagged.go)
	ring       *ring.Ring
	ringKey    string         // identifies the ring's members and vnodes, to reuse it
	rf         map[string]int // replication factor by keyspace
}

func (t *topology) alive(id string) (string, bool) {
	m, ok := t.byID[id]
	return m.GRPCAddr, ok && m.serves()
}

// serves reports whether the client should send m requests: alive, with an
// address, and not draining (a draining node refuses them).
func (m Member) serves() bool {
	return m.State == StateAlive && m.GRPCAddr != "" && !m.Draining
}

// applyStatus installs a fetched ClusterStatus. keyspaces replaces the
// replication factor cache unless nil.
func (c *Client) applyStatus(resp *kvpb.ClusterStatusResponse, keyspaces []*kvpb.KeyspaceConfig) {
	st := clusterStatusFromPB(resp)
	for {
		old := c.topo.Load()
		t := &topology{status: st, byID: make(map[string]Member, len(st.Members))}

		// The ring holds every member that has not left, alive or not
		// (draining too: it keeps its keys through a restart), as
		// the coordinators' ring does (replication.Topology): a down node
		// keeps its place, and its keys are served by the next replicas in
		// the preference list rather than moved.
		// Nodes that place keys by the metadata log's topology say each
		// member's ring state: then the ring is its normal and leaving
		// members, as the coordinators' is, and a joining node is not
		// taken for a replica before it has its data.
		byLog := false
		for _, m := range st.Members {
			byLog = byLog || m.RingState != ""
		}
		var rms []ring.Member
		for _, m := range st.Members {
			t.byID[m.ID] = m
			onRing := m.State != StateLeft
			if byLog {
				onRing = m.RingState == "normal" || m.RingState == "leaving" || m.RingState == "removing"
			}
			if onRing {
				rms = append(rms, ring.Member{ID: m.ID, Zone: m.Zone})
			}
			if m.serves() {
				t.aliveAddrs = append(t.aliveAddrs, m.GRPCAddr)
			}
			t.noteFlagged(m)
		}
		slices.SortFunc(rms, func(a, b ring.Member) int { return strings.Compare(a.ID, b.ID) })
		var key strings.Builder
		key.WriteString(strconv.Itoa(st.Vnodes))
		for _, m := range rms {
			fmt.Fprintf(&key, "\x00%s\x00%s", m.ID, m.Zone)
		}
		t.ringKey = key.String()
		switch {
		case len(rms) == 0:
		case old != nil && old.ringKey == t.ringKey:
			t.ring = old.ring
		default:
			t.ring = ring.New(rms, st.Vnodes)
		}

		if keyspaces != nil {
			t.rf = make(map[string]int, len(keyspaces))
			for _, ks := range keyspaces {
				t.rf[ks.GetName()] = int(ks.GetReplicationFactor())
			}
		} else if old != nil {
			t.rf = old.rf
		}

		if c.topo.CompareAndSwap(old, t) {
			if old == nil || old.ringKey != t.ringKey || !slices.Equal(old.aliveAddrs, t.aliveAddrs) {
				c.log.Info("adaptkv client: topology changed", "answered_by", st.NodeID, "members", len(st.Members), "alive", len(t.aliveAddrs), "vnodes", st.Vnodes)
			}
			return
		}
	}
}

// setRF records a keyspace's replication factor learned from an admin call;
// n == 0 forgets it.
func (c *Client) setRF(name string, n int) {
	for {
		old := c.topo.Load()
		if old == nil {
			return // the first refresh will fetch every keyspace
		}
		t := *old
		t.rf = maps.Clone(old.rf)
		if t.rf == nil {
			t.rf = make(map[string]int)
		}
		if n == 0 {
			delete(t.rf, name)
		} else {
			t.rf[name] = n
		}
		if c.topo.CompareAndSwap(old, &t) {
			return
		}
	}
}

// keyNodes lists the nodes for a request on one key: the key's alive
// replicas first, so that the node receiving the request is one of them and
// saves a hop, then every other node as a fallback, since any node can
// coordinate. The replicas are ranked by the client's latency scores
// (rank.go): reads rotate over the replicas about as fast as the best,
// writes keep the preference order (the primary first) unless a replica is
// markedly slower than the best; slow and flagged replicas go last.
func (c *Client) keyNodes(kind opKind, keyspace string, key []byte) []string {
	addrs, t := c.liveReplicas(keyspace, key)
	if t != nil {
		addrs = c.scores.rank(addrs, kind, t.flagged, c.spread.Add(1))
	}
	return appendNew(addrs, c.anyNode()...)
}

// liveReplicas lists the addresses of key's live replicas in ring order,
// flagged ones last, and the topology they come from; none (and a nil
// topology) without routing or before the keyspace is known.
func (c *Client) liveReplicas(keyspace string, key []byte) ([]string, *topology) {
	t := c.topo.Load()
	if t == nil || t.ring == nil || c.cfg.DisableRouting {
		return nil, nil
	}
	n, ok := t.rf[keyspace]
	if !ok {
		// Created after the last refresh, or does not exist (then the
		// call fails with KEYSPACE_NOT_FOUND and the refresh is
		// rate-limited).
		c.triggerRefresh()
		return nil, nil
	}
	var addrs []string
	for _, id := range t.ring.PreferenceList(keyspace, key, n) {
		if addr, ok := t.alive(id); ok {
			addrs = appendNew(addrs, addr)
		}
	}
	return t.demoteFlagged(addrs), t
}

// paxosNodes lists the nodes for a write of key through Paxos: the key's
// live replicas in ring order (flagged ones last), then any node, neither
// ranked nor spread, so that a key's conditional writes meet on one
// coordinator. It serializes them and proposes each under the lease the one
// before it left there: one round trip to the replicas instead of two, and
// no dueling rounds between its own clients on a hot key.
func (c *Client) paxosNodes(keyspace string, key []byte) []string {
	addrs, _ := c.liveReplicas(keyspace, key)
	return appendNew(addrs, c.anyNode()...)
}

// adminWriteNodes lists the nodes for a keyspace change: the metadata leader
// first, since it is the node that can commit it, then any node.
func (c *Client) adminWriteNodes() []string {
	var addrs []string
	if t := c.topo.Load(); t != nil && !c.cfg.DisableRouting {
		if addr, ok := t.alive(t.status.MetadataLeader); ok {
			addrs = append(addrs, addr)
		}
	}
	return appendNew(addrs, c.anyNode()...)
}

// triggerRefresh asks the refresher for an early refresh without waiting.
func (c *Client) triggerRefresh() {
	select {
	case c.refreshCh <- struct{}{}:
	default:
	}
}

// refresher re-reads the topology periodically and when asked, until Close.
func (c *Client) refresher() {
	defer close(c.done)
	var tick <-chan time.Time
	if c.cfg.TopologyRefresh > 0 {
		t := time.NewTicker(c.cfg.TopologyRefresh)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-c.bg.Done():
			return
		case <-tick:
		case <-c.refreshCh:
			last := time.Unix(0, c.lastRefresh.Load())
			if wait := minRefreshGap - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-c.bg.Done():
					return
				}
			}
		}
		timeout := c.cfg.RequestTimeout
		if timeout <= 0 {
			timeout = c.cfg.DialTimeout
		}
		ctx, cancel := context.WithTimeout(c.bg, timeout)
		err := c.refresh(ctx, c.refreshNodes())
		cancel()
		if err != nil && c.bg.Err() == nil {
			c.log.Warn("adaptkv client: topology refresh failed", "err", err)
		}
	}
}

// refreshNodes picks up to refreshFanout nodes to ask for the topology,
// those whose connection is not failing first.
func (c *Client) refreshNodes() []string {
	addrs := c.anyNode()
	var good, bad []string
	for _, addr := range addrs {
		cc, err := c.conn(addr)
		if err != nil {
			continue
		}
		if s := cc.GetState(); s == connectivity.TransientFailure || s == connectivity.Shutdown {
			bad = append(bad, addr)
		} else {
			good = append(good, addr)
		}
	}
	all := append(good, bad...)
	return all[:min(len(all), refreshFanout)]
}

// refresh asks addrs for the cluster status at once and installs the first
// answer, with the keyspaces of the node that gave it. Asking in parallel
// means a node that hangs costs nothing when another answers.
func (c *Client) refresh(ctx context.Context, addrs []string) error {
	c.lastRefresh.Store(time.Now().UnixNano())
	if len(addrs) == 0 {
		return errors.New("no node to ask")
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		addr string
		resp *kvpb.ClusterStatusResponse
		err  error
	}
	answers := make(chan answer, len(addrs))
	for _, addr := range addrs {
		go func() {
			cc, err := c.conn(addr)
			if err != nil {
				answers <- answer{addr: addr, err: err}
				return
			}
			resp, err := kvpb.NewAdminClient(cc).ClusterStatus(ctx, &kvpb.ClusterStatusRequest{})
			answers <- answer{addr, resp, err}
		}()
	}
	var errs []error
	for range addrs {
		a := <-answers
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.addr, a.err))
			continue
		}
		cancel() // the others are no longer needed
		var keyspaces []*kvpb.KeyspaceConfig
		if cc, err := c.conn(a.addr); err == nil {
			ls, err := kvpb.NewAdminClient(cc).ListKeyspaces(parent, &kvpb.ListKeyspacesRequest{})
			if err == nil {
				keyspaces = ls.GetKeyspaces()
				if keyspaces == nil {
					keyspaces = []*kvpb.KeyspaceConfig{} // none, as opposed to unknown
				}
			} else {
				c.log.Warn("adaptkv client: listing keyspaces failed; keeping the cached replication factors", "addr", a.addr, "err", err)
			}
		}
		c.applyStatus(a.resp, keyspaces)
		return nil
	}
	return errors.Join(errs...)
}

// memberAddr returns the gRPC address of node id, refreshing the topology
// once if the node is not known yet.
func (c *Client) memberAddr(ctx context.Context, op, id string) (string, error) {
	lookup := func() (string, bool) {
		if t := c.topo.Load(); t != nil {
			if m, ok := t.byID[id]; ok && m.GRPCAddr != "" {
				return m.GRPCAddr, true
			}
		}
		return "", false
	}
	if addr, ok := lookup(); ok {
		return addr, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.DialTimeout)
		defer cancel()
	}
	if err := c.refresh(ctx, c.refreshNodes()); err != nil {
		e := localError(op, codes.Unavailable, "", "cannot look up node %q: %v", id, err)
		e.Cause = err
		return "", e
	}
	if addr, ok := lookup(); ok {
		return addr, nil
	}
	var known []string
	if t := c.topo.Load(); t != nil {
		known = slices.Sorted(maps.Keys(t.byID))
	}
	return "", localError(op, codes.NotFound, ReasonNodeNotFound, "node %q is not a member of the cluster (members: %s)", id, strings.Join(known, ", "))
}
