package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/launch"
)

// How the adaptkv nodes are started.
const (
	// modeBinary builds cmd/adaptkv and runs `adaptkv node` three times:
	// the product as shipped.
	modeBinary = "binary"
	// modeReexec runs each node in a re-executed child of this binary
	// through node.Start with the configuration `adaptkv node` uses; still
	// one process per node, for when cmd/adaptkv does not build.
	modeReexec = "reexec"
	// modeAuto tries binary and falls back to reexec.
	modeAuto = "auto"
)

// adaptkvCluster is three adaptkv node processes.
type adaptkvCluster struct {
	mode      string
	procs     []*proc
	endpoints []string
	httpAddrs []string
	// certsDir holds the cluster's certificates; empty when insecure.
	certsDir string
}

// clientConfig sets cfg up to reach the cluster: the root user's
// certificate, or plaintext for an insecure cluster.
func (c *adaptkvCluster) clientConfig(cfg client.Config) client.Config {
	cfg.CertsDir = c.certsDir
	cfg.DisableBatching = unaryClient
	return cfg
}

// unaryClient is --adaptkv-unary.
var unaryClient bool

// maxInflight is --adaptkv-max-inflight: 0 leaves the nodes' default.
var maxInflight int

// nodeAddrs are one node's loopback addresses.
type nodeAddrs struct {
	id                         string
	grpc, gossip, raft, httpEP string
}

// startAdaptkv starts an n-node cluster of real processes with pebble data
// under dir, and waits until every node sees every other alive and the
// metadata log has a leader.
//
// The nodes are secure (mutual TLS, certificates made in dir/certs) unless
// insecure; pprof serves their profiles on the HTTP address.
func startAdaptkv(ctx context.Context, mode, self, repo, dir string, n int, insecure, pprof bool) (*adaptkvCluster, error) {
	bin := ""
	if mode == modeBinary || mode == modeAuto {
		var err error
		bin, err = buildAdaptkv(ctx, repo, dir)
		switch {
		case err != nil && mode == modeBinary:
			return nil, err
		case err != nil:
			slog.Warn("cmd/adaptkv does not build or lacks `adaptkv node`; running nodes as re-executed children of this binary instead", "err", err)
			mode = modeReexec
		default:
			mode = modeBinary
		}
	}
	ports, err := freePorts(4 * n)
	if err != nil {
		return nil, err
	}
	addrs := make([]nodeAddrs, n)
	for i := range addrs {
		at := func(k int) string { return fmt.Sprintf("127.0.0.1:%d", ports[4*i+k]) }
		addrs[i] = nodeAddrs{id: fmt.Sprintf("n%d", i+1), grpc: at(0), gossip: at(1), raft: at(2), httpEP: at(3)}
	}
	c := &adaptkvCluster{mode: mode}
	security := []string{"--insecure"}
	if !insecure {
		c.certsDir = filepath.Join(dir, "certs")
		if err := launch.CreateCerts(c.certsDir, []string{"127.0.0.1"}); err != nil {
			return nil, err
		}
		security = []string{"--certs-dir", c.certsDir}
	}
	if pprof {
		security = append(security, "--pprof")
	}
	if maxInflight != 0 {
		security = append(security, "--max-inflight", fmt.Sprint(maxInflight))
	}
	for i, a := range addrs {
		var seeds []string
		for j, b := range addrs {
			if j != i {
				seeds = append(seeds, b.gossip)
			}
		}
		args := []string{
			"--id", a.id,
			"--data-dir", filepath.Join(dir, "adaptkv-"+a.id),
			"--bootstrap-expect", fmt.Sprint(n),
			"--seeds", strings.Join(seeds, ","),
			"--grpc-addr", a.grpc, "--gossip-addr", a.gossip, "--raft-addr", a.raft, "--http-addr", a.httpEP,
		}
		args = append(args, security...)
		var p *proc
		if mode == modeBinary {
			p, err = startProc("adaptkv-"+a.id, dir, bin, append([]string{"node", "--log-level", "warn"}, args...)...)
		} else {
			p, err = startProc("adaptkv-"+a.id, dir, self, append([]string{adaptkvNodeCmd}, args...)...)
		}
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
		c.endpoints = append(c.endpoints, a.grpc)
		c.httpAddrs = append(c.httpAddrs, a.httpEP)
	}
	cli, err := client.New(ctx, c.clientConfig(client.Config{Endpoints: c.endpoints, DialTimeout: time.Second}))
	if err != nil {
		c.stop()
		return nil, err
	}
	defer cli.Close()
	err = waitFor(ctx, "adaptkv", 2*time.Minute, c.procs, func(ctx context.Context) error {
		st, err := cli.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range st.Members {
			if m.State == client.StateAlive {
				alive++
			}
		}
		if alive < n || st.MetadataLeader == "" {
			return fmt.Errorf("%d of %d nodes alive, metadata leader %q", alive, n, st.MetadataLeader)
		}
		// Every node must also serve: one that has not applied a keyspace
		// yet refuses requests as NODE_NOT_READY (which failed the first
		// inserts of a load).
		for i, h := range c.httpAddrs {
			if err := ready(ctx, h); err != nil {
				return fmt.Errorf("node n%d: %w", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// ready asks a node's /readyz (200 once it has joined, knows a metadata
// leader and has applied a keyspace).
func ready(ctx context.Context, httpAddr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready (/readyz %d)", resp.StatusCode)
	}
	return nil
}

func (c *adaptkvCluster) stop() {
	for _, p := range c.procs {
		p.stop(15 * time.Second)
	}
}

// buildAdaptkv builds cmd/adaptkv from repo into dir and checks that it has
// the `node` command with the flags used here.
func buildAdaptkv(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "adaptkv")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/adaptkv")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/adaptkv in %s: %w\n%s", repo, err, out)
	}
	help, err := exec.CommandContext(ctx, bin, "node", "--help").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("adaptkv node --help: %w\n%s", err, help)
	}
	for _, f := range []string{"--id", "--data-dir", "--bootstrap-expect", "--seeds", "--grpc-addr", "--gossip-addr", "--raft-addr", "--http-addr", "--log-level", "--certs-dir", "--pprof", "--max-inflight"} {
		if !bytes.Contains(help, []byte(f)) {
			return "", fmt.Errorf("adaptkv node has no %s flag", f)
		}
	}
	return bin, nil
}

// adaptkvNodeMain is the body of a re-executed child that runs one node
// through node.Start, configured as `adaptkv node` configures it for nodes
// on one machine (node.DefaultLocalConfig), until SIGTERM.
func adaptkvNodeMain(args []string) error {
	fs := flag.NewFlagSet(adaptkvNodeCmd, flag.ContinueOnError)
	cfg := node.DefaultLocalConfig()
	fs.StringVar(&cfg.ID, "id", "", "node ID")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 3, "size of the new cluster")
	seeds := fs.String("seeds", "", "gossip addresses of the other nodes")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC address")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "gossip address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "Raft address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP address (metrics, pprof)")
	certsDir := fs.String("certs-dir", "", "certificate directory (node.crt, node.key, ca.crt)")
	fs.Bool("insecure", false, "plaintext (the default without --certs-dir)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "admission bound of client requests (-1: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *certsDir != "" {
		m, err := security.LoadNode(*certsDir)
		if err != nil {
			return err
		}
		cfg.Security = m
	}
	if *seeds != "" {
		cfg.Seeds = strings.Split(*seeds, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The node outlives ctx, which only signals the stop below.
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("node %s: stop: %w", cfg.ID, err)
	}
	return nil
}
