package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/membership"
)

// Gossip encryption keys are rotated through the metadata log: an entry
// installs a key, makes one the primary, or removes one, and every node
// applies it to its gossip keyring and persists the result in its data
// directory when the entry applies. The log holds the cluster's keyring
// from the first change on; before that each node runs with the keyring it
// persisted, or the certificate directory's gossip.key on its first start.

// Errors of the gossip keyring that the admin API maps to statuses.
var (
	// ErrKeyringDisabled: gossip is not encrypted on this node (it runs
	// insecure, or its certificate directory had no gossip.key).
	ErrKeyringDisabled = errors.New("node: gossip is not encrypted")
	// ErrPrimaryKey refuses to remove the key gossip is encrypted with.
	ErrPrimaryKey = errors.New("node: the primary gossip key cannot be removed")
	// ErrUnknownKey: the keyring does not hold the key.
	ErrUnknownKey = errors.New("node: gossip key not in the keyring")
)

// keyringFile is the gossip keyring's file in the data directory.
const keyringFile = "gossip.keyring"

// Keyring operations of a "keyring" entry.
const (
	keyringInstall = "install"
	keyringUse     = "use"
	keyringRemove  = "remove"
)

// GossipKeyring is a gossip keyring: keys in standard base64, sorted, the
// primary among them.
type GossipKeyring struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
}

// canonicalKey validates a key and writes it the one way keyrings hold it.
func canonicalKey(key string) (string, error) {
	k, err := security.DecodeGossipKey(key)
	if err != nil {
		return "", err
	}
	return security.EncodeGossipKey(k), nil
}

// apply returns the keyring after op: install adds a key (a key already
// installed is no change), use makes an installed key the primary, remove
// takes out a key that is not the primary. It does not modify k.
func (k GossipKeyring) apply(op, key string) (GossipKeyring, error) {
	key, err := canonicalKey(key)
	if err != nil {
		return k, err
	}
	has := slices.Contains(k.Keys, key)
	next := GossipKeyring{Primary: k.Primary, Keys: slices.Clone(k.Keys)}
	switch op {
	case keyringInstall:
		if !has {
			next.Keys = append(next.Keys, key)
			slices.Sort(next.Keys)
		}
	case keyringUse:
		if !has {
			return k, fmt.Errorf("%w: install it before using it", ErrUnknownKey)
		}
		next.Primary = key
	case keyringRemove:
		switch {
		case !has:
			return k, ErrUnknownKey
		case key == k.Primary:
			return k, fmt.Errorf("%w: make another key the primary first", ErrPrimaryKey)
		}
		next.Keys = slices.DeleteFunc(next.Keys, func(s string) bool { return s == key })
	default:
		return k, fmt.Errorf("keyring: unknown operation %q", op)
	}
	return next, nil
}

// bytes returns the keys, primary first, as memberlist takes them.
func (k GossipKeyring) bytes() [][]byte {
	out := make([][]byte, 0, len(k.Keys))
	if p, err := security.DecodeGossipKey(k.Primary); err == nil {
		out = append(out, p)
	}
	for _, s := range k.Keys {
		if s == k.Primary {
			continue
		}
		if b, err := security.DecodeGossipKey(s); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// keyringOf is the keyring of keys given primary first.
func keyringOf(keys [][]byte) GossipKeyring {
	var k GossipKeyring
	for i, b := range keys {
		s := security.EncodeGossipKey(b)
		if i == 0 {
			k.Primary = s
		}
		k.Keys = append(k.Keys, s)
	}
	slices.Sort(k.Keys)
	return k
}

// keyringChange is a "keyring" entry of the metadata log.
type keyringChange struct {
	Op  string `json:"op"`
	Key string `json:"key"`
	// Base is the proposer's keyring, which the change applies to when the
	// log holds no keyring yet (the first change of a cluster).
	Base *GossipKeyring `json:"base,omitempty"`
}

// keyringFSM is the metadata state machine's part for the gossip keyring.
type keyringFSM struct {
	// state is the cluster's keyring, nil until the first keyring entry.
	state atomic.Pointer[GossipKeyring]
	// onApply, set before Raft starts, puts a keyring in force on this
	// node; index is the entry's (or snapshot's).
	onApply func(index uint64, k GossipKeyring)
}

// applyKeyring applies a "keyring" entry; f.mu is held.
func (f *fsm) applyKeyring(c *keyringChange, index uint64) applyResult {
	if c == nil {
		return applyResult{err: fmt.Errorf("metadata entry %d: keyring entry without a change", index)}
	}
	var base GossipKeyring
	switch cur := f.gossip.state.Load(); {
	case cur != nil:
		base = *cur
	case c.Base != nil:
		base = *c.Base
	default:
		return applyResult{err: fmt.Errorf("metadata entry %d: %w: the log holds no keyring and the entry none", index, ErrKeyringDisabled)}
	}
	next, err := base.apply(c.Op, c.Key)
	if err != nil {
		return applyResult{err: err}
	}
	f.gossip.state.Store(&next)
	if f.gossip.onApply != nil {
		f.gossip.onApply(index, next)
	}
	return applyResult{}
}

// restoreKeyring installs a snapshot's keyring; f.mu is held.
func (f *fsm) restoreKeyring(k *GossipKeyring, index uint64) {
	f.gossip.state.Store(k)
	if k != nil && f.gossip.onApply != nil {
		f.gossip.onApply(index, *k)
	}
}

// persistedKeyring is the keyring file's content: the keyring in force and
// the metadata index it is from, so that a restarted node replaying its
// log does not step back through older keyrings.
type persistedKeyring struct {
	Index uint64 `json:"index"`
	GossipKeyring
}

// gossipKeys is a node's gossip keyring: loaded at start, persisted, and
// put in force in its gossip layer.
type gossipKeys struct {
	log  *slog.Logger
	path string // empty for an in-memory node

	mu      sync.Mutex
	enabled bool
	cur     persistedKeyring
	members *membership.Membership // nil until gossip starts
}

// loadGossipKeys returns the node's keyring: the data directory's keyring
// file if there is one, else the certificate directory's gossip.key (then
// persisted). An insecure node, or one without gossip.key, does not
// encrypt gossip.
func loadGossipKeys(cfg Config, log *slog.Logger) (*gossipKeys, error) {
	g := &gossipKeys{log: log}
	if cfg.Security == nil {
		return g, nil
	}
	if !cfg.InMemory {
		g.path = filepath.Join(cfg.DataDir, keyringFile)
		b, err := os.ReadFile(g.path)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &g.cur); err != nil {
				return nil, fmt.Errorf("%s: %w", g.path, err)
			}
			if len(g.cur.bytes()) != len(g.cur.Keys) || !slices.Contains(g.cur.Keys, g.cur.Primary) {
				return nil, fmt.Errorf("%s: %w: a key is not valid or the primary is not among the keys", g.path, security.ErrBadGossipKey)
			}
			g.enabled = true
			return g, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("read gossip keyring: %w", err)
		}
	}
	k, err := security.LoadGossipKey(cfg.Security.Dir())
	if errors.Is(err, fs.ErrNotExist) {
		log.Warn("gossip is not encrypted: no gossip key in the certificate directory", "dir", cfg.Security.Dir())
		return g, nil
	}
	if err != nil {
		return nil, err
	}
	g.enabled = true
	g.cur = persistedKeyring{GossipKeyring: keyringOf([][]byte{k})}
	if err := g.persist(); err != nil {
		return nil, err
	}
	return g, nil
}

// startGossip starts the gossip layer with the keyring, so that no change
// applied meanwhile is missed.
func (g *gossipKeys) startGossip(start func(keys [][]byte) (*membership.Membership, error)) (*membership.Membership, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var keys [][]byte
	if g.enabled {
		keys = g.cur.bytes()
	}
	m, err := start(keys)
	if err == nil {
		g.members = m
	}
	return m, err
}

// apply puts the keyring of the metadata entry (or snapshot) at index in
// force: it persists it, then changes the gossip keyring. A keyring from
// an index at or before the one persisted is a replay and is skipped.
func (g *gossipKeys) apply(index uint64, k GossipKeyring) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.enabled || index <= g.cur.Index {
		return
	}
	g.cur = persistedKeyring{Index: index, GossipKeyring: k}
	if err := g.persist(); err != nil {
		g.log.Error("gossip keyring not persisted; a restart would use the previous one", "err", err)
	}
	if g.members != nil {
		if err := g.members.SetKeys(g.cur.bytes()[0], g.cur.bytes()); err != nil {
			g.log.Error("gossip keyring not applied", "err", err)
			return
		}
	}
	g.log.Info("gossip keyring changed", "index", index, "keys", len(k.Keys))
}

// inForce is the keyring gossip uses now.
func (g *gossipKeys) inForce() (GossipKeyring, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.enabled {
		return GossipKeyring{}, false
	}
	if g.members != nil {
		return keyringOf(g.members.Keys()), true
	}
	return g.cur.GossipKeyring, true
}

// persist writes the keyring file: temporary file, fsync, rename, fsync
// of the directory. g.mu is held or g not shared yet.
func (g *gossipKeys) persist() error {
	if g.path == "" {
		return nil
	}
	b, err := json.Marshal(g.cur)
	if err != nil {
		return err
	}
	tmp := g.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, g.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	if d, err := os.Open(filepath.Dir(g.path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Dir(g.path), err)
		}
	}
	return nil
}

// keyringStatus maps keyring errors to gRPC statuses.
func keyringStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, security.ErrBadGossipKey):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrPrimaryKey), errors.Is(err, ErrKeyringDisabled):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrUnknownKey):
		return status.Error(codes.NotFound, err.Error())
	}
	return toStatus(err)
}

// keyringWait bounds how long a keyring change waits for every member to
// report it in force.
const keyringWait = 15 * time.Second

var keyringOps = map[kvpb.KeyringOp]string{
	kvpb.KeyringOp_KEYRING_OP_INSTALL: keyringInstall,
	kvpb.KeyringOp_KEYRING_OP_USE:     keyringUse,
	kvpb.KeyringOp_KEYRING_OP_REMOVE:  keyringRemove,
}

// Keyring implements Admin.Keyring.
func (s adminServer) Keyring(ctx context.Context, req *kvpb.KeyringRequest) (*kvpb.KeyringResponse, error) {
	n := s.n
	local, ok := n.gossipKeys.inForce()
	if !ok {
		return nil, keyringStatus(fmt.Errorf("%w on %s: it runs insecure or its certificate directory has no %s", ErrKeyringDisabled, n.cfg.ID, security.GossipKeyFile))
	}
	if req.GetLocal() {
		return &kvpb.KeyringResponse{Primary: local.Primary, Keys: local.Keys, Index: n.meta.Applied(),
			Nodes: []*kvpb.KeyringResponse_Node{{Id: n.cfg.ID, Primary: local.Primary, Keys: local.Keys, Applied: n.meta.Applied()}}}, nil
	}
	if req.GetOp() == kvpb.KeyringOp_KEYRING_OP_LIST {
		target := local
		if st := n.meta.gossip.state.Load(); st != nil {
			target = *st
		}
		return n.keyringReport(ctx, target, n.meta.Applied(), false), nil
	}
	op, ok := keyringOps[req.GetOp()]
	if !ok {
		return nil, invalidArgument(fmt.Sprintf("keyring: unknown operation %v", req.GetOp()))
	}
	key, err := canonicalKey(req.GetKey())
	if err != nil {
		return nil, keyringStatus(err)
	}
	if resp, forwarded, err := s.forwardKeyring(ctx, req); forwarded {
		return resp, err
	}
	cur := local
	if st := n.meta.gossip.state.Load(); st != nil {
		cur = *st
	}
	// The state machine checks again; checking first gives a refusal
	// without a log entry.
	if _, err := cur.apply(op, key); err != nil {
		return nil, keyringStatus(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := propose(pctx, n.raft, command{Op: "keyring", Keyring: &keyringChange{Op: op, Key: key, Base: &local}, AtUnixMs: time.Now().UnixMilli()}); err != nil {
		return nil, keyringStatus(err)
	}
	target := *n.meta.gossip.state.Load()
	return n.keyringReport(ctx, target, n.meta.Applied(), true), nil
}

// forwardKeyring sends a keyring change to the metadata leader when this
// node is not it; forwarded=false when this node should propose itself.
func (s adminServer) forwardKeyring(ctx context.Context, req *kvpb.KeyringRequest) (*kvpb.KeyringResponse, bool, error) {
	_, leaderID := s.n.raft.LeaderWithID()
	if string(leaderID) == s.n.cfg.ID {
		return nil, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedHeader)) > 0 {
		return nil, true, toStatus(fmt.Errorf("%w: this node was told it leads, and it does not", ErrNoLeader))
	}
	if leaderID == "" {
		return nil, true, toStatus(fmt.Errorf("%w: try again once the metadata voters have elected one", ErrNoLeader))
	}
	c, err := s.n.transport.adminClient(string(leaderID))
	if err != nil {
		return nil, true, toStatus(fmt.Errorf("%w: leader %s unreachable: %w", ErrNoLeader, leaderID, err))
	}
	resp, err := c.Keyring(metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.n.cfg.ID), req)
	return resp, true, err
}

// keyringReport asks every alive member for its keyring. With wait, it
// asks again until every one has applied index and holds target, or
// keyringWait (or ctx) ends; the members that did not are named.
func (n *Node) keyringReport(ctx context.Context, target GossipKeyring, index uint64, wait bool) *kvpb.KeyringResponse {
	budget := keyringWait
	if deadline, ok := ctx.Deadline(); ok {
		// Answer before the caller gives up, so that it learns which
		// members are behind instead of only that time ran out.
		budget = min(budget, time.Until(deadline)*4/5)
	}
	wctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	for {
		resp := &kvpb.KeyringResponse{Primary: target.Primary, Keys: target.Keys, Index: index}
		for _, m := range n.members.View().Members {
			if m.State != membership.Alive {
				continue
			}
			node := n.memberKeyring(wctx, m.ID)
			resp.Nodes = append(resp.Nodes, node)
			if node.Error != "" || node.Applied < index || node.Primary != target.Primary || !slices.Equal(node.Keys, target.Keys) {
				resp.NotApplied = append(resp.NotApplied, m.ID)
			}
		}
		if !wait || len(resp.NotApplied) == 0 {
			return resp
		}
		select {
		case <-wctx.Done():
			return resp
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// memberKeyring is member id's keyring as it reports it.
func (n *Node) memberKeyring(ctx context.Context, id string) *kvpb.KeyringResponse_Node {
	if id == n.cfg.ID {
		k, _ := n.gossipKeys.inForce()
		return &kvpb.KeyringResponse_Node{Id: id, Primary: k.Primary, Keys: k.Keys, Applied: n.meta.Applied()}
	}
	out := &kvpb.KeyringResponse_Node{Id: id}
	c, err := n.transport.adminClient(id)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.Keyring(cctx, &kvpb.KeyringRequest{Op: kvpb.KeyringOp_KEYRING_OP_LIST, Local: true})
	if err != nil || len(resp.GetNodes()) != 1 {
		out.Error = fmt.Sprintf("no keyring report: %v", err)
		return out
	}
	return resp.GetNodes()[0]
}
