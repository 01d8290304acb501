package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptkv/adaptkv/bench"
)

// redisServer is one redis-server process: the single-node ceiling of the
// comparison, with the append-only file fsynced before every reply
// (appendfsync always) so that an acknowledged write is as durable as in
// etcd and adaptkv's pebble.
type redisServer struct {
	p    *proc
	addr string
}

// errNoRedis says redis-server is not installed; the comparison then skips
// Redis rather than failing.
var errNoRedis = errors.New("redis-server not found in PATH (Debian: apt-get install -y redis-server)")

// startRedis starts redis-server on a free loopback port with its files
// under dir.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedis
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ports[0])
	p, err := startProc("redis", dir, bin,
		"--port", port, "--bind", "127.0.0.1",
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--dir", dir, "--daemonize", "no")
	if err != nil {
		return nil, err
	}
	r := &redisServer{p: p, addr: "127.0.0.1:" + port}
	cli := redis.NewClient(&redis.Options{Addr: r.addr})
	defer cli.Close()
	if err := waitFor(ctx, "redis", 30*time.Second, []*proc{p}, func(ctx context.Context) error {
		return cli.Ping(ctx).Err()
	}); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	return r, nil
}

func (r *redisServer) stop() { r.p.stop(10 * time.Second) }

// redisStore drives Redis with GET and SET through go-redis, whose pool
// holds a connection per concurrent worker.
type redisStore struct {
	cli *redis.Client
}

func newRedisStore(addr string, concurrency int) *redisStore {
	return &redisStore{cli: redis.NewClient(&redis.Options{
		Addr:     addr,
		PoolSize: concurrency + 4,
		// go-redis retries a failed command 3 times by default; keep it,
		// as the adaptkv SDK and clientv3 retry too.
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
	})}
}

// Read implements bench.Store.
func (s *redisStore) Read(ctx context.Context, key string) error {
	err := s.cli.Get(ctx, key).Err()
	if errors.Is(err, redis.Nil) {
		return bench.ErrNotFound
	}
	return err
}

// Update implements bench.Store.
func (s *redisStore) Update(ctx context.Context, key string, value []byte) error {
	return s.cli.Set(ctx, key, value, 0).Err()
}

// Insert implements bench.Store.
func (s *redisStore) Insert(ctx context.Context, key string, value []byte) error {
	return s.Update(ctx, key, value)
}

// Scan is not supported: Redis keeps no key order to scan in.
func (s *redisStore) Scan(context.Context, string, int) error {
	return fmt.Errorf("redis: ordered scan: %w", errUnsupported)
}

// Close implements bench.Store.
func (s *redisStore) Close() error { return s.cli.Close() }

var _ bench.Store = (*redisStore)(nil)
