package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/launch"
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
	certsDir := fs.String("certs-dir", "", "mutual TLS on the client and peer URLs with node.crt, node.key and ca.crt from this directory (the URLs must be https)")
	httpURL := fs.String("client-http-url", "", "serve HTTP (gateway, health) here, leaving the client URL to gRPC alone")
	quota := fs.Int64("quota-bytes", 0, "backend quota (--quota-backend-bytes); 0: etcd's default of 2 GiB")
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
	if *httpURL != "" {
		hu, err := url.Parse(*httpURL)
		if err != nil {
			return fmt.Errorf("client http url: %w", err)
		}
		cfg.ListenClientHttpUrls = []url.URL{*hu}
	}
	if *certsDir != "" {
		// What --cert-file, --key-file, --trusted-ca-file and
		// --client-cert-auth (and their --peer-* twins) set: the node
		// certificate adaptkv's nodes use, which has the server and client
		// usages and the loopback address among its SANs, so that members
		// verify each other both ways, and clients must present a
		// certificate from the same CA. TLS 1.3 as adaptkv requires.
		ti := transport.TLSInfo{
			CertFile:       filepath.Join(*certsDir, security.NodeCertFile),
			KeyFile:        filepath.Join(*certsDir, security.NodeKeyFile),
			TrustedCAFile:  filepath.Join(*certsDir, security.CACertFile),
			ClientCertAuth: true,
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = ti, ti
		cfg.TlsMinVersion = "TLS1.3"
	}
	cfg.QuotaBackendBytes = *quota
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
	// tls is the client side of mutual TLS (the root client certificate
	// of adaptkv's certificate tool); nil when plaintext.
	tls *tls.Config
}

// etcdOptions are how the members are run.
type etcdOptions struct {
	// secure runs client and peer URLs with mutual TLS, certificates made
	// in dir/certs.
	secure bool
	// grpcOnly moves etcd's HTTP service to a URL of its own
	// (--listen-client-http-urls), so that its client URL serves gRPC
	// natively instead of through Go's HTTP/2 server, which is how etcd
	// serves both on one TLS port.
	grpcOnly bool
	// quotaBytes raises the backend quota from etcd's default 2 GiB (0:
	// the default), for data sets that would not fit in it.
	quotaBytes int64
}

// etcdQuota is the backend quota for records of valueSize bytes: etcd's
// default (0) when they fit in a quarter of it with room to spare, else
// 8 GiB, the most etcd's documentation suggests. Writing past the quota
// fails with "mvcc: database space exceeded"; bbolt's file holds a record
// in about a page share plus the key and value.
func etcdQuota(records int64, valueSize int) int64 {
	if records*int64(valueSize+200) < 512<<20 {
		return 0
	}
	return 8 << 30
}

// startEtcd starts a 3-member etcd cluster of child processes on loopback
// ports, with data under dir, and waits until it takes writes.
func startEtcd(ctx context.Context, self, dir string, members int, o etcdOptions) (*etcdCluster, error) {
	ports, err := freePorts(3 * members)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	c := &etcdCluster{}
	var certArgs []string
	if o.secure {
		certs := filepath.Join(dir, "certs")
		if err := launch.CreateCerts(certs, []string{"127.0.0.1"}); err != nil {
			return nil, err
		}
		m, err := security.LoadClient(certs, security.RootUser)
		if err != nil {
			return nil, err
		}
		scheme = "https"
		c.tls = m.ClientConfig()
		certArgs = []string{"-certs-dir", certs}
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=%s://127.0.0.1:%d", i+1, scheme, ports[3*i+1]))
	}
	for i := range members {
		name := fmt.Sprintf("m%d", i+1)
		cu := fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3*i])
		args := []string{etcdMemberCmd,
			"-name", name,
			"-dir", filepath.Join(dir, "etcd-"+name),
			"-client-url", cu,
			"-peer-url", fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3*i+1]),
			"-initial-cluster", strings.Join(initial, ",")}
		if o.grpcOnly {
			args = append(args, "-client-http-url", fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3*i+2]))
		}
		if o.quotaBytes > 0 {
			args = append(args, "-quota-bytes", fmt.Sprint(o.quotaBytes))
		}
		p, err := startProc("etcd-"+name, dir, self, append(args, certArgs...)...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.endpoints = append(c.endpoints, cu)
	}
	cli, err := newEtcdClient(c.endpoints, c.tls)
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

// newEtcdClient returns a client of endpoints, over TLS with tlsCfg unless
// it is nil.
func newEtcdClient(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         tlsCfg,
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
func newEtcdStore(endpoints []string, tlsCfg *tls.Config, serializable bool) (*etcdStore, error) {
	cli, err := newEtcdClient(endpoints, tlsCfg)
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
