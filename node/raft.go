package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/membership"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// maxVoters is the size of the metadata log's voting group. Five voters
// survive two failures; more would slow every commit for no gain in a
// log that changes a few times a minute.
const maxVoters = 5

// deadVoterTimeout is how long a voter may be dead before the leader hands
// its vote to a live non-voter. Long enough that a restart keeps its vote.
const deadVoterTimeout = 30 * time.Second

// raftStreamLayer is Raft's TCP transport with outgoing connections bound
// to the node's own host (see membership's boundTransport for why). It
// closes every connection it made or accepted when Raft closes it:
// raft.NetworkTransport closes only its listener, which leaves its pooled
// connections open and, on the peers, the goroutines reading them blocked
// for as long as the process lives.
//
// With security material it speaks mutual TLS 1.3 and accepts only node
// certificates of the cluster's CA, in both directions: a client
// certificate, or any certificate of another CA, never reaches Raft.
// Handshakes of accepted connections run off the accept loop, each bounded
// by raftHandshakeTimeout, so that a peer that connects and says nothing
// holds up no one.
type raftStreamLayer struct {
	net.Listener
	dialer net.Dialer
	sec    *security.Material // nil: plaintext
	log    *slog.Logger

	// accepted delivers the connections whose handshake succeeded (secure
	// only: plaintext Accept takes them from the listener); done is closed
	// by Close.
	accepted chan net.Conn
	done     chan struct{}
	acceptWG sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// raftHandshakeTimeout bounds a Raft connection's TLS handshake.
const raftHandshakeTimeout = 10 * time.Second

func newRaftStreamLayer(ln net.Listener, dialer net.Dialer, sec *security.Material, log *slog.Logger) *raftStreamLayer {
	s := &raftStreamLayer{Listener: ln, dialer: dialer, sec: sec, log: log, conns: map[net.Conn]struct{}{},
		accepted: make(chan net.Conn), done: make(chan struct{})}
	if sec != nil {
		s.acceptWG.Add(1)
		go s.acceptLoop()
	}
	return s
}

func (s *raftStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := s.dialer
	d.Timeout = timeout
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if s.sec != nil {
		cfg := s.sec.PeerConfig()
		cfg.ServerName = security.ServerName(string(addr))
		tc := tls.Client(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), min(timeout, raftHandshakeTimeout))
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			// ClientConfig already refused a server that is not a node of
			// the CA (security.ErrNotNode).
			return nil, fmt.Errorf("raft: TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	return s.track(c)
}

// acceptLoop, run when secure, accepts connections until the listener
// closes and hands each to Accept once its handshake succeeded.
func (s *raftStreamLayer) acceptLoop() {
	defer s.acceptWG.Done()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (too many open files): back off a little.
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.acceptWG.Add(1)
		go func() {
			defer s.acceptWG.Done()
			tc, err := s.handshake(c)
			if err != nil {
				s.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			s.deliver(tc)
		}()
	}
}

// handshake completes the server side of an accepted connection's TLS
// handshake and checks that the peer holds a node certificate.
func (s *raftStreamLayer) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, s.sec.ServerConfig())
	ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
	defer cancel()
	go func() {
		// Close aborts handshakes in progress.
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	id, ok := security.ConnIdentity(tc)
	if !ok || !id.Node {
		who := "a certificate without an identity"
		if ok {
			who = id.String()
		}
		return nil, fmt.Errorf("%w: %s", security.ErrNotNode, who)
	}
	return tc, nil
}

func (s *raftStreamLayer) deliver(c net.Conn) {
	select {
	case s.accepted <- c:
	case <-s.done:
		c.Close()
	}
}

// Accept implements net.Listener.
func (s *raftStreamLayer) Accept() (net.Conn, error) {
	if s.sec == nil {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		return s.track(c)
	}
	select {
	case c := <-s.accepted:
		return s.track(c)
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it closes the listener and every
// connection still open.
func (s *raftStreamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	close(s.done)
	s.mu.Unlock()
	err := s.Listener.Close()
	for c := range conns {
		c.Close()
	}
	s.acceptWG.Wait()
	return err
}

func (s *raftStreamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	s.conns[c] = struct{}{}
	return &raftConn{Conn: c, layer: s}, nil
}

// raftConn forgets itself in its layer when closed.
type raftConn struct {
	net.Conn
	layer *raftStreamLayer
}

func (c *raftConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.conns, c.Conn)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}

func (n *Node) startRaft(ln net.Listener, host string) error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogHclogWriter{n.log}})
	if n.cfg.LocalTimings {
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 250 * time.Millisecond
		rc.CommitTimeout = 20 * time.Millisecond
	}
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if n.cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(n.cfg.DataDir, "raft")
		rs, err := storage.OpenRaftStore(dir, n.log)
		if err != nil {
			return fmt.Errorf("open metadata log: %w", err)
		}
		n.closers = append(n.closers, rs.Close)
		fss, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
		if err != nil {
			return fmt.Errorf("open metadata snapshots: %w", err)
		}
		logs, stable, snaps = rs, rs, fss
	}
	layer := newRaftStreamLayer(ln, net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}, n.cfg.Security, n.log)
	tr := raft.NewNetworkTransport(layer, 3, 10*time.Second, io.Discard)
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("inspect metadata log: %w", err)
	}
	r, err := raft.NewRaft(rc, n.meta, logs, stable, snaps, tr)
	if err != nil {
		return fmt.Errorf("start metadata log: %w", err)
	}
	n.raft = r
	n.raftHasState = has
	return nil
}

// bootstrapLoop forms the metadata log of a new cluster: once BootstrapExpect
// members are alive, the first maxVoters of them by ID bootstrap it with the
// same configuration, which Raft accepts from all of them.
func (n *Node) bootstrapLoop(ctx context.Context) {
	if n.raftHasState || n.cfg.BootstrapExpect == 0 {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if leader, _ := n.raft.LeaderWithID(); leader != "" {
			return // someone bootstrapped, or we were added
		}
		var alive []membership.Member
		for _, m := range n.members.View().Members {
			if m.State == membership.Alive && m.RaftAddr != "" {
				alive = append(alive, m)
			}
		}
		if len(alive) < n.cfg.BootstrapExpect {
			continue
		}
		sort.Slice(alive, func(i, j int) bool { return alive[i].ID < alive[j].ID })
		voters := alive[:min(len(alive), maxVoters)]
		var conf raft.Configuration
		self := false
		for _, m := range voters {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
			self = self || m.ID == n.cfg.ID
		}
		if self {
			if err := n.raft.BootstrapCluster(conf).Error(); err != nil && err != raft.ErrCantBootstrap {
				n.log.Warn("metadata bootstrap failed", "err", err)
				continue
			}
			n.log.Info("metadata log bootstrapped", "voters", len(conf.Servers))
		}
		return
	}
}

// leaderLoop runs on every node and acts while this node leads the
// metadata log: it adds gossip members to the Raft group (voters up to
// maxVoters, non-voters beyond), removes members that left, hands the vote
// of a long-dead voter to a live non-voter, and creates the default
// keyspace once.
func (n *Node) leaderLoop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		if err := n.reconcile(); err != nil {
			n.log.Warn("metadata membership reconcile", "err", err)
		}
		if err := n.assignNumbers(ctx); err != nil {
			n.log.Warn("node numbers", "err", err)
		}
		if len(n.meta.Topology().Members) == 0 {
			if err := n.initTopology(ctx); err != nil {
				n.log.Warn("topology", "err", err)
				continue
			}
		}
		n.ensureDefaultKeyspace(ctx)
	}
}

func (n *Node) reconcile() error {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return err
	}
	servers := map[string]raft.Server{}
	voters := 0
	for _, s := range fut.Configuration().Servers {
		servers[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// A member the ring says has left (decommissioned, removed or
	// replaced) gives up its place in the metadata group too: a removed or
	// replaced node never says goodbye to gossip, so it would otherwise
	// keep its vote (counted towards the quorum, never cast) until gossip
	// forgets it, and its server entry for good.
	topo := n.meta.Topology()
	leftRing := func(id string) bool {
		tm, ok := topo.Member(id)
		return ok && tm.State == StateLeft
	}
	for id, s := range servers {
		if !leftRing(id) || id == n.cfg.ID {
			continue
		}
		if err := n.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
		n.log.Info("metadata server removed (left the ring)", "member", id, "suffrage", s.Suffrage.String())
		if s.Suffrage == raft.Voter {
			voters--
		}
		delete(servers, id)
	}
	view := n.members.View()
	now := time.Now()
	for _, m := range view.Members {
		s, in := servers[m.ID]
		if leftRing(m.ID) {
			// Until it rejoins (topology.go: joining again after
			// rejoinGrace), a member that left is not let back in.
			continue
		}
		switch {
		case m.State == membership.Left && in:
			if err := n.raft.RemoveServer(raft.ServerID(m.ID), 0, 5*time.Second).Error(); err != nil {
				return fmt.Errorf("remove %s: %w", m.ID, err)
			}
			n.log.Info("metadata server removed (left the cluster)", "member", m.ID)
			if s.Suffrage == raft.Voter {
				voters--
			}
		case m.State == membership.Alive && m.RaftAddr != "" && (!in || s.Address != raft.ServerAddress(m.RaftAddr)):
			var f raft.IndexFuture
			if voters < maxVoters || (in && s.Suffrage == raft.Voter) {
				f = n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, 5*time.Second)
				if !in {
					voters++
				}
			} else {
				f = n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, 5*time.Second)
			}
			if err := f.Error(); err != nil {
				return fmt.Errorf("add %s: %w", m.ID, err)
			}
			n.log.Info("metadata server added", "member", m.ID, "voters", voters)
		case m.State == membership.Alive && in && s.Suffrage == raft.Nonvoter && voters < maxVoters:
			if err := n.raft.AddVoter(raft.ServerID(m.ID), s.Address, 0, 5*time.Second).Error(); err != nil {
				return fmt.Errorf("promote %s: %w", m.ID, err)
			}
			voters++
			n.log.Info("metadata server promoted to voter", "member", m.ID)
		}
	}
	// Hand a long-dead voter's vote to a live non-voter, so that the group
	// keeps maxVoters live votes as nodes fail for good.
	for _, m := range view.Members {
		s, in := servers[m.ID]
		if !in || s.Suffrage != raft.Voter || m.State != membership.Dead || now.Sub(m.Since) < deadVoterTimeout || m.ID == n.cfg.ID {
			continue
		}
		for _, c := range view.Members {
			cs, cin := servers[c.ID]
			if cin && cs.Suffrage == raft.Nonvoter && c.State == membership.Alive {
				if err := n.raft.DemoteVoter(raft.ServerID(m.ID), 0, 5*time.Second).Error(); err != nil {
					return fmt.Errorf("demote %s: %w", m.ID, err)
				}
				if err := n.raft.AddVoter(cs.ID, cs.Address, 0, 5*time.Second).Error(); err != nil {
					return fmt.Errorf("promote %s: %w", c.ID, err)
				}
				n.log.Warn("metadata vote moved from a dead voter", "dead", m.ID, "to", c.ID)
				return nil
			}
		}
	}
	return nil
}

func (n *Node) ensureDefaultKeyspace(ctx context.Context) {
	if n.defaultCreated {
		return
	}
	if _, ok := n.meta.Def(DefaultKeyspace); ok {
		n.defaultCreated = true
		return
	}
	rf := n.cfg.DefaultReplicationFactor
	if rf == 0 {
		rf = min(3, max(1, n.cfg.BootstrapExpect))
	}
	rf = min(rf, n.ringSize())
	def := KeyspaceDef{Name: DefaultKeyspace, ReplicationFactor: rf, Level: quorum.Quorum.String()}
	if _, err := propose(ctx, n.raft, command{Op: "create", Keyspace: def, AtUnixMs: time.Now().UnixMilli()}); err != nil {
		n.log.Debug("create default keyspace", "err", err)
		return
	}
	n.defaultCreated = true
	n.log.Info("default keyspace created", "rf", rf)
}

// MetadataServers names each server of the metadata Raft group, as this
// node's configuration has it, with its role: leader, voter or nonvoter.
func (n *Node) MetadataServers() map[string]string { return n.raftRoles() }

// raftRoles names each server's role in the metadata log.
func (n *Node) raftRoles() map[string]string {
	roles := map[string]string{}
	fut := n.raft.GetConfiguration()
	if fut.Error() != nil {
		return roles
	}
	_, leader := n.raft.LeaderWithID()
	for _, s := range fut.Configuration().Servers {
		switch {
		case s.ID == leader:
			roles[string(s.ID)] = "leader"
		case s.Suffrage == raft.Voter:
			roles[string(s.ID)] = "voter"
		default:
			roles[string(s.ID)] = "nonvoter"
		}
	}
	return roles
}

// slogHclogWriter sends Raft's (hclog) lines to slog at warn level; Raft is
// configured to log warnings and errors only.
type slogHclogWriter struct{ log *slog.Logger }

func (w slogHclogWriter) Write(p []byte) (int, error) {
	w.log.Warn(string(trimNewline(p)), "component", "raft")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}
