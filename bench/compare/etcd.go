package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/adaptkv/adaptkv/bench"
)

// etcdMemberMain is the body of a re-executed child that runs one etcd
// member with embed.StartEtcd until SIGTERM. Each member in a process of its
// own gives etcd what the adaptkv nodes get: its own scheduler, GC and
// GOMAXPROCS, rather than one shared runtime for the whole cluster.
func etcdMemberMain(args []string) error {
	fs := flag.NewFlagSet(etcdMemberCmd, flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("dir", "", "data directory")
	client := fs.String("client-url", "", "client URL")
	peer := fs.String("peer-url", "", "peer URL")
	cluster := fs.String("initial-cluster", "", "name=peer-url,...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cu, err := url.Parse(*client)
	if err != nil {
		return fmt.Errorf("client url: %w", err)
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		return fmt.Errorf("peer url: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *cluster
	cfg.InitialClusterToken = "adaptkv-compare"
	cfg.ClusterState = embed.ClusterStateFlagNew
	// Everything else is etcd's default, fsync on every commit included:
	// the comparison is against etcd as people run it.
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", *name, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("etcd member %s: not ready after 2 minutes", *name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", *name, err)
	}
	return nil
}

// etcdCluster is three etcd member processes.
type etcdCluster struct {
	procs     []*proc
	endpoints []string
}

// startEtcd starts a 3-member etcd cluster of child processes on loopback
// ports, with data under dir, and waits until it takes writes.
func startEtcd(ctx context.Context, self, dir string, members int) (*etcdCluster, error) {
	ports, err := freePorts(2 * members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	c := &etcdCluster{}
	for i := range members {
		name := fmt.Sprintf("m%d", i+1)
		cu := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		p, err := startProc("etcd-"+name, dir, self, etcdMemberCmd,
			"-name", name,
			"-dir", filepath.Join(dir, "etcd-"+name),
			"-client-url", cu,
			"-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"-initial-cluster", strings.Join(initial, ","))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.endpoints = append(c.endpoints, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	cli, err := newEtcdClient(c.endpoints)
	if err != nil {
		c.stop()
		return nil, err
	}
	defer cli.Close()
	err = waitFor(ctx, "etcd", 2*time.Minute, c.procs, func(ctx context.Context) error {
		_, err := cli.Put(ctx, "compare-ready", "1")
		return err
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *etcdCluster) stop() {
	for _, p := range c.procs {
		p.stop(10 * time.Second)
	}
}

func newEtcdClient(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// etcdStore drives etcd through one shared clientv3 client, which balances
// requests over the three members round-robin over one gRPC connection each
// (as the adaptkv SDK keeps one connection per node).
type etcdStore struct {
	cli        *clientv3.Client
	readOpts   []clientv3.OpOption
	reqTimeout time.Duration
}

// newEtcdStore returns a Store; serializable selects etcd's serializable
// reads (served by any member from its local state, possibly stale) instead
// of its default linearizable ones (confirmed with the leader by ReadIndex).
func newEtcdStore(endpoints []string, serializable bool) (*etcdStore, error) {
	cli, err := newEtcdClient(endpoints)
	if err != nil {
		return nil, err
	}
	s := &etcdStore{cli: cli, reqTimeout: 5 * time.Second}
	if serializable {
		s.readOpts = append(s.readOpts, clientv3.WithSerializable())
	}
	return s, nil
}

// Read implements bench.Store.
func (s *etcdStore) Read(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, key, s.readOpts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return bench.ErrNotFound
	}
	return nil
}

// Update implements bench.Store.
func (s *etcdStore) Update(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	_, err := s.cli.Put(ctx, key, string(value))
	return err
}

// Insert implements bench.Store.
func (s *etcdStore) Insert(ctx context.Context, key string, value []byte) error {
	return s.Update(ctx, key, value)
}

// Scan implements bench.Store with a range read from start.
func (s *etcdStore) Scan(ctx context.Context, start string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	opts := append([]clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithLimit(int64(n))}, s.readOpts...)
	_, err := s.cli.Get(ctx, start, opts...)
	return err
}

// Close implements bench.Store.
func (s *etcdStore) Close() error { return s.cli.Close() }

// ReadVersion implements bench.CondStore: the key's mod revision, from a
// read with the store's options.
func (s *etcdStore) ReadVersion(ctx context.Context, key string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, key, s.readOpts...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, bench.ErrNotFound
	}
	return resp.Kvs[0].ModRevision, nil
}

// UpdateIf implements bench.CondStore with etcd's compare-and-swap: a Txn
// that puts when the key's mod revision is still the one expected and
// otherwise reads the key, so that a failed condition returns the current
// revision in the same round trip (as adaptkv's PutIf returns the current
// version).
func (s *etcdStore) UpdateIf(ctx context.Context, key string, version any, value []byte) (any, error) {
	rev, _ := version.(int64)
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		// The put's revision is the transaction's.
		return resp.Header.Revision, nil
	}
	var cur int64
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		cur = rr.Kvs[0].ModRevision
	}
	return cur, bench.ErrNotApplied
}

var _ bench.CondStore = (*etcdStore)(nil)

// errUnsupported is returned by stores that lack an operation (Redis has no
// ordered scan); the comparison does not run workloads that need it.
var errUnsupported = errors.New("operation not supported by this store")
