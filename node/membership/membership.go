package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/adaptkv/adaptkv/api/ring"
)

// State is a member's gossip state.
type State int

const (
	// Alive: the member answers probes.
	Alive State = iota + 1
	// Dead: the member stopped answering; it keeps its place on the ring.
	Dead
	// Left: the member left gracefully and is off the ring.
	Left
)

// String names the state.
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return "unknown"
}

// Meta is what a node publishes about itself through gossip.
type Meta struct {
	ID       string `json:"id"`
	GRPCAddr string `json:"grpc"`
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http,omitempty"`
	Zone     string `json:"zone,omitempty"`
	// Leaving is published just before a graceful leave, so that the
	// others can tell a leave from a failure: memberlist's leave callback
	// does not say which it was.
	Leaving bool `json:"leaving,omitempty"`
	// Draining is published when the node starts to drain before it
	// stops (a restart, not a leave): it still answers its peers, but
	// clients should send their requests elsewhere.
	Draining bool `json:"draining,omitempty"`
	// Replace is the dead member a node started with --replace takes the
	// place of: the metadata leader does not propose it as joining, the
	// replacement does (Admin.ReplaceNode).
	Replace string `json:"replace,omitempty"`
}

// Member is one node as this node sees it.
type Member struct {
	Meta
	GossipAddr string
	State      State
	// Since is when the member entered its current state.
	Since time.Time
}

// View is an immutable snapshot of the membership.
type View struct {
	// Members are sorted by ID.
	Members []Member
	// Ring holds every member that has not left.
	Ring  *ring.Ring
	alive map[string]bool
}

// Alive reports whether the member is alive.
func (v *View) Alive(id string) bool { return v.alive[id] }

// Member returns the member with the given ID.
func (v *View) Member(id string) (Member, bool) {
	i := sort.Search(len(v.Members), func(i int) bool { return v.Members[i].ID >= id })
	if i < len(v.Members) && v.Members[i].ID == id {
		return v.Members[i], true
	}
	return Member{}, false
}

// Config configures the gossip layer.
type Config struct {
	// Meta is published to the other nodes; Meta.ID is the gossip name.
	Meta Meta
	// BindAddr is the host:port gossip listens on (UDP and TCP). Port 0
	// picks a free port. Outgoing TCP connections also leave from this host,
	// so that network rules on node addresses see all of a node's traffic.
	BindAddr string
	// Local selects memberlist's local-network timings (probe every second,
	// 200 ms probe timeout): failures are detected in a few seconds, at the
	// cost of more gossip traffic than the LAN profile.
	Local bool
	// Vnodes is the number of virtual nodes per member on the ring.
	Vnodes int
	// OnChange is called, never concurrently, after the View changed. It
	// must not block.
	OnChange func(*View)
	// Logger receives memberlist's logs at debug level; nil discards them.
	Logger *slog.Logger
	// ReconnectInterval is how often this node tries to rejoin the members
	// it sees dead, and its seeds when it sees fewer members alive than it
	// knows (see reconnect). Each wait is drawn within ±25% of it, so that
	// nodes do not all try at once. 0 means DefaultReconnectInterval; a
	// negative value turns the reconnector off.
	ReconnectInterval time.Duration
	// ReconnectTimeout is how long a dead member keeps being retried after
	// it was declared dead; 0 means DefaultReconnectTimeout. A member that
	// left gracefully is never retried.
	ReconnectTimeout time.Duration
	// Keys, when not empty, encrypt and authenticate gossip (AES-GCM): the
	// first key encrypts what this node sends, any of them decrypts what it
	// receives, and messages that are not encrypted with one of them are
	// dropped, in both directions. Empty runs gossip in the clear. See
	// SetKeys for rotation.
	Keys [][]byte

	// cut, set by tests only, partitions the network: packets and
	// connections from this node's gossip address to an address it cuts
	// are dropped, as an iptables DROP rule would drop them.
	cut func(from, to string) bool
}

// DefaultReconnectInterval is Config.ReconnectInterval's default: a healed
// partition is noticed within about a second, at the cost of one TCP
// connection attempt per dead member and second, of which at most
// reconnectFanout at a time.
const DefaultReconnectInterval = time.Second

// DefaultReconnectTimeout is Config.ReconnectTimeout's default, Serf's
// (Consul's) 72 hours: long enough for a node to be repaired over a long
// weekend.
const DefaultReconnectTimeout = 72 * time.Hour

// reconnectFanout bounds the dead members one reconnect round tries, so
// that a cluster with many members dead for good spends a bounded effort
// on them.
const reconnectFanout = 3

// Membership is this node's gossip membership.
type Membership struct {
	cfg  Config
	ml   *memberlist.Memberlist
	view atomic.Pointer[View]
	// keyring is memberlist's, nil when gossip is not encrypted.
	keyring *memberlist.Keyring

	mu      sync.Mutex
	members map[string]*Member
	// leaving holds the members that said, directly, that they are leaving.
	leaving map[string]bool
	// seeds are the addresses given to Join, tried again by the
	// reconnector when this node sees fewer members alive than it knows.
	seeds []string

	// ctx ends the reconnector (cancel), and done is closed when it has
	// ended. dialCtx, canceled when gossip stops, aborts dials in progress.
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}
	dialCtx    context.Context
	dialCancel context.CancelFunc
	// pubMu serializes publish so that views are stored and OnChange is
	// called in order.
	pubMu sync.Mutex
}

// ErrNoSeedReachable is returned by Join when no seed answered.
var ErrNoSeedReachable = errors.New("membership: no seed reachable")

// Start starts gossip on cfg.BindAddr. It does not join anyone: call Join.
func Start(cfg Config) (*Membership, error) {
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip port %q: %w", portStr, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReconnectInterval == 0 {
		cfg.ReconnectInterval = DefaultReconnectInterval
	}
	if cfg.ReconnectTimeout <= 0 {
		cfg.ReconnectTimeout = DefaultReconnectTimeout
	}
	m := &Membership{cfg: cfg, members: map[string]*Member{}, leaving: map[string]bool{}, done: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.dialCtx, m.dialCancel = context.WithCancel(context.Background())
	mlc := memberlist.DefaultLANConfig()
	if cfg.Local {
		mlc = memberlist.DefaultLocalConfig()
		// Faster than memberlist's local profile, for nodes that share a
		// machine: a failed node is suspected after one 500 ms probe and
		// declared dead 1.5-3 s later (SuspicionMult 3 × 500 ms, up to 2×
		// without confirmations), instead of 4-10 s, and members exchange
		// full state every 2 s. The price is more gossip traffic, which on
		// loopback is negligible. (Neither brings a member memberlist
		// declared dead back after a partition heals: the reconnector does.)
		mlc.ProbeInterval = 500 * time.Millisecond
		mlc.ProbeTimeout = 200 * time.Millisecond
		mlc.SuspicionMult = 3
		mlc.SuspicionMaxTimeoutMult = 2
		mlc.PushPullInterval = 2 * time.Second
		mlc.GossipToTheDeadTime = 30 * time.Second
	}
	mlc.Name = cfg.Meta.ID
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0])
		if err != nil {
			m.cancel()
			m.dialCancel()
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mlc.Keyring = kr
		m.keyring = kr
		mlc.GossipVerifyIncoming = true
		mlc.GossipVerifyOutgoing = true
	}
	mlc.Delegate = (*delegate)(m)
	mlc.Events = (*events)(m)
	mlc.Logger = log.New(slogWriter{cfg.Logger}, "", 0)
	// memberlist's transport binds a random port when asked for 0, trying
	// UDP on the TCP port it got; retry if that UDP port is taken.
	var tr *boundTransport
	for attempt := 0; ; attempt++ {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{host}, BindPort: port, Logger: mlc.Logger,
		})
		if err == nil {
			tr = &boundTransport{NetTransport: nt, dialer: net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}, ctx: m.dialCtx}
			if cfg.cut != nil {
				self := net.JoinHostPort(host, strconv.Itoa(nt.GetAutoBindPort()))
				tr.cut = func(to string) bool { return cfg.cut(self, to) }
			}
			break
		}
		if port != 0 || attempt >= 10 {
			m.cancel()
			m.dialCancel()
			return nil, fmt.Errorf("gossip listen on %s: %w", cfg.BindAddr, err)
		}
	}
	mlc.Transport = tr
	mlc.BindAddr = host
	mlc.BindPort = tr.GetAutoBindPort()
	mlc.AdvertiseAddr = host
	mlc.AdvertisePort = mlc.BindPort
	// A node restarted on new ports (port 0) must be able to take its name
	// back once the old incarnation is known dead.
	mlc.DeadNodeReclaimTime = time.Second
	ml, err := memberlist.Create(mlc)
	if err != nil {
		m.cancel()
		m.dialCancel()
		tr.Shutdown()
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	m.ml = ml
	m.publish()
	if cfg.ReconnectInterval > 0 {
		go m.reconnectLoop()
	} else {
		close(m.done)
	}
	return m, nil
}

// boundTransport is memberlist's network transport with outgoing TCP
// connections bound to the gossip host: the stock transport dials without a
// source address, so rules written against node addresses would miss them.
type boundTransport struct {
	*memberlist.NetTransport
	dialer net.Dialer
	// ctx ends when the membership stops and aborts dials in progress, so
	// that a rejoin attempt towards an unreachable address does not hold up
	// the shutdown for a whole TCP timeout.
	ctx context.Context
	// cut, nil outside tests, says which destinations a simulated partition
	// cuts off.
	cut func(to string) bool
}

// errCut is the error of a dial that a simulated partition swallowed.
var errCut = errors.New("membership: i/o timeout (simulated partition)")

func (t *boundTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.cut != nil && t.cut(addr) {
		return time.Now(), nil // sent, and lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *boundTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.cut != nil && t.cut(addr) {
		// A dropped SYN: nothing answers until the timeout.
		select {
		case <-time.After(timeout):
		case <-t.ctx.Done():
		}
		return nil, errCut
	}
	d := t.dialer
	d.Timeout = timeout
	return d.DialContext(t.ctx, "tcp", addr)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// ErrNotEncrypted is returned by SetKeys on a membership started without
// keys: encryption cannot be turned on in a running cluster without
// partitioning it.
var ErrNotEncrypted = errors.New("membership: gossip is not encrypted")

// SetKeys makes the keyring hold exactly keys, primary encrypting what this
// node sends: it installs the missing keys, switches to primary, then
// removes the others, so that at no moment does the keyring lack a key that
// it holds before and after. primary must be among keys.
func (m *Membership) SetKeys(primary []byte, keys [][]byte) error {
	kr := m.keyring
	if kr == nil {
		return ErrNotEncrypted
	}
	if !slices.ContainsFunc(keys, func(k []byte) bool { return string(k) == string(primary) }) {
		return fmt.Errorf("membership: primary key not among the keys")
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("membership: install key: %w", err)
		}
	}
	if err := kr.UseKey(primary); err != nil {
		return fmt.Errorf("membership: use key: %w", err)
	}
	for _, k := range slices.Clone(kr.GetKeys()) {
		if !slices.ContainsFunc(keys, func(w []byte) bool { return string(w) == string(k) }) {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("membership: remove key: %w", err)
			}
		}
	}
	return nil
}

// Keys returns the keyring, primary first; nil when gossip is not
// encrypted.
func (m *Membership) Keys() [][]byte {
	kr := m.keyring
	if kr == nil {
		return nil
	}
	return slices.Clone(kr.GetKeys()) // memberlist keeps the primary first
}

// Addr is the gossip address actually bound.
func (m *Membership) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the seeds and returns how many answered. The reconnector
// remembers the seeds and contacts them again whenever this node sees
// fewer members alive than it knows.
func (m *Membership) Join(seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, nil
	}
	m.mu.Lock()
	for _, s := range seeds {
		if !slices.Contains(m.seeds, s) {
			m.seeds = append(m.seeds, s)
		}
	}
	m.mu.Unlock()
	n, err := m.ml.Join(seeds)
	if n == 0 {
		return 0, fmt.Errorf("%w (%v): %w", ErrNoSeedReachable, seeds, err)
	}
	return n, nil
}

// View returns the current membership snapshot.
func (m *Membership) View() *View { return m.view.Load() }

// Leave tells the cluster this node is leaving for good, waiting up to
// timeout for the message to spread, then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	// A leaving node must not rejoin: no new reconnect round starts (one
	// in progress ends with stop, below).
	m.cancel()
	m.mu.Lock()
	m.cfg.Meta.Leaving = true
	m.mu.Unlock()
	// Tell every member directly, over TCP, before the leave message goes
	// out: gossip may deliver the leave before the metadata update, and a
	// member that saw the leave first would take it for a failure.
	msg := append([]byte(leaveMsgPrefix), m.cfg.Meta.ID...)
	for _, n := range m.ml.Members() {
		if n.Name != m.cfg.Meta.ID {
			if err := m.ml.SendReliable(n, msg); err != nil {
				m.cfg.Logger.Warn("leave intent not delivered", "member", n.Name, "err", err)
			}
		}
	}
	if err := m.ml.UpdateNode(timeout); err != nil {
		m.cfg.Logger.Warn("leave intent not spread", "err", err)
	}
	err := m.ml.Leave(timeout)
	m.stop()
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// SetDraining publishes that this node is draining and waits up to
// timeout for the update to spread. The node stays a member: it keeps its
// place on the ring and keeps answering gossip.
func (m *Membership) SetDraining(timeout time.Duration) error {
	m.mu.Lock()
	m.cfg.Meta.Draining = true
	if self, ok := m.members[m.cfg.Meta.ID]; ok {
		self.Draining = true
	}
	m.mu.Unlock()
	m.publish()
	return m.ml.UpdateNode(timeout)
}

// Shutdown stops gossip without a leave message: the others will see this
// node fail, and it keeps its place on the ring.
func (m *Membership) Shutdown() error {
	m.stop()
	return m.ml.Shutdown()
}

// stop ends the reconnector, aborting its dials, and waits for it. It may
// be called more than once.
func (m *Membership) stop() {
	m.cancel()
	m.dialCancel()
	<-m.done
}

// reconnectLoop runs reconnect every ReconnectInterval, ±25%, until the
// membership stops.
func (m *Membership) reconnectLoop() {
	defer close(m.done)
	iv := m.cfg.ReconnectInterval
	t := time.NewTimer(iv)
	defer t.Stop()
	for {
		t.Reset(iv*3/4 + rand.N(iv/2+1))
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.reconnect()
	}
}

// reconnect tries to rejoin the members this node sees dead, and its seeds
// when it sees fewer members alive than it knows, all at once, and waits
// for the attempts.
//
// memberlist alone never re-forms a cluster after a partition heals: it
// probes and exchanges state only with members it thinks alive, and it
// gossips to dead members (for GossipToTheDeadTime) only the broadcasts
// still pending, which run out seconds after the deaths that caused them.
// Once both sides of a partition have declared the other dead and said so,
// nothing crosses the healed network. A join is a full state exchange: the
// member that learns it was declared dead refutes it, and the next
// exchange (or that refutation's gossip) makes each side see the other
// alive. Serf's reconnector does the same for Consul.
func (m *Membership) reconnect() {
	// Addr takes memberlist's lock, which memberlist holds while it calls
	// set, which takes m.mu: never call it under m.mu.
	self := m.Addr()
	m.mu.Lock()
	targets := reconnectTargets(m.members, m.cfg.Meta.ID, self, m.seeds, time.Now(), m.cfg.ReconnectTimeout, reconnectFanout, rand.Perm)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, addr := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.rejoin(addr)
		}()
	}
	wg.Wait()
}

// rejoin joins addr, twice if the first exchange did not make the member
// there alive to this node: the first one usually tells each side that the
// other declared it dead, and each refutes with a new incarnation, which
// the second exchange carries across at once instead of leaving it to
// gossip or to the next round.
func (m *Membership) rejoin(addr string) {
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := m.ml.Join([]string{addr}); err != nil {
			m.cfg.Logger.Debug("rejoin failed", "addr", addr, "err", err)
			return
		}
		if m.aliveAt(addr) {
			m.cfg.Logger.Info("rejoined", "addr", addr, "exchanges", attempt)
			return
		}
	}
}

// aliveAt reports whether a member this node sees alive gossips at addr.
func (m *Membership) aliveAt(addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mem := range m.members {
		if mem.GossipAddr == addr && mem.State == Alive {
			return true
		}
	}
	return false
}

// reconnectTargets picks the gossip addresses one reconnect round joins:
// up to fanout members (in the order perm draws) that are dead, not this
// node, and died less than timeout before now; and, when it sees one of
// those dead, or sees itself alone, every seed that is neither this node's
// address nor an alive member's. Members that left, or died timeout ago or
// earlier, are forgotten. perm returns a permutation of [0, n).
func reconnectTargets(members map[string]*Member, self, selfAddr string, seeds []string, now time.Time, timeout time.Duration, fanout int, perm func(n int) []int) []string {
	var dead []string
	aliveAddr := map[string]bool{selfAddr: true}
	alive, known := 0, 0
	for _, mem := range members {
		switch {
		case mem.ID == self:
			continue
		case mem.State == Alive:
			alive++
			aliveAddr[mem.GossipAddr] = true
		case mem.State == Left || now.Sub(mem.Since) >= timeout:
			continue // forgotten
		case mem.GossipAddr != "":
			dead = append(dead, mem.GossipAddr)
		}
		known++
	}
	// Map order is random already, but perm makes the choice testable.
	slices.Sort(dead)
	var out []string
	for _, i := range perm(len(dead)) {
		if len(out) == fanout {
			break
		}
		if !slices.Contains(out, dead[i]) {
			out = append(out, dead[i])
		}
	}
	if alive < known || alive == 0 {
		for _, s := range seeds {
			if !aliveAddr[s] && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// publish rebuilds the View from the member map. Callers hold no lock.
func (m *Membership) publish() {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.mu.Lock()
	v := &View{alive: map[string]bool{}}
	var onRing []ring.Member
	for _, mem := range m.members {
		v.Members = append(v.Members, *mem)
		if mem.State == Alive {
			v.alive[mem.ID] = true
		}
		if mem.State != Left {
			onRing = append(onRing, ring.Member{ID: mem.ID, Zone: mem.Zone})
		}
	}
	m.mu.Unlock()
	// The local node is always on the ring and alive to itself, even before
	// memberlist reports it.
	if _, ok := v.alive[m.cfg.Meta.ID]; !ok {
		found := false
		for _, mem := range v.Members {
			found = found || mem.ID == m.cfg.Meta.ID
		}
		if !found {
			v.Members = append(v.Members, Member{Meta: m.cfg.Meta, GossipAddr: m.cfg.BindAddr, State: Alive, Since: time.Now()})
			onRing = append(onRing, ring.Member{ID: m.cfg.Meta.ID, Zone: m.cfg.Meta.Zone})
		}
		v.alive[m.cfg.Meta.ID] = true
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID })
	v.Ring = ring.New(onRing, m.cfg.Vnodes)
	m.view.Store(v)
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(v)
	}
}

func (m *Membership) set(n *memberlist.Node, state State) {
	var meta Meta
	if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.ID == "" {
		m.cfg.Logger.Warn("ignoring gossip member without adaptkv metadata", "name", n.Name, "err", err)
		return
	}
	m.mu.Lock()
	switch {
	case state == Dead && (meta.Leaving || m.leaving[meta.ID]):
		state = Left
	case state == Alive && !meta.Leaving:
		delete(m.leaving, meta.ID) // back after a leave
	}
	cur, ok := m.members[meta.ID]
	if !ok || cur.State != state {
		cur = &Member{Since: time.Now()}
		m.members[meta.ID] = cur
	}
	cur.Meta = meta
	cur.GossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	cur.State = state
	m.mu.Unlock()
	m.publish()
}

type events Membership

func (e *events) NotifyJoin(n *memberlist.Node) { (*Membership)(e).set(n, Alive) }

// NotifyLeave is called for failures and graceful leaves alike (memberlist
// does not fill in Node.State here); set tells them apart by the Leaving
// flag the member published before it left.
func (e *events) NotifyLeave(n *memberlist.Node) { (*Membership)(e).set(n, Dead) }

func (e *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).set(n, Alive) }

type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	b, _ := json.Marshal(d.cfg.Meta)
	d.mu.Unlock()
	if len(b) > limit {
		// memberlist would drop the node; better to say why.
		d.cfg.Logger.Error("node metadata exceeds gossip limit", "bytes", len(b), "limit", limit)
	}
	return b
}

// leaveMsgPrefix starts the direct message a leaving member sends to every
// other member.
const leaveMsgPrefix = "adaptkv-leave:"

// NotifyMsg records a member's leave intent. It only takes a short lock, as
// memberlist's packet loop calls it.
func (d *delegate) NotifyMsg(b []byte) {
	if id, ok := strings.CutPrefix(string(b), leaveMsgPrefix); ok && id != "" {
		d.mu.Lock()
		d.leaving[id] = true
		d.mu.Unlock()
	}
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// slogWriter sends memberlist's log lines to slog at debug level, except
// its [ERR] and [WARN] lines.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	s := string(p)
	for len(s) > 0 && (s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	switch {
	case len(s) > 5 && s[:5] == "[ERR]":
		w.log.Warn(s, "component", "memberlist")
	case len(s) > 6 && s[:6] == "[WARN]":
		w.log.Debug(s, "component", "memberlist")
	default:
		w.log.Debug(s, "component", "memberlist")
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}
