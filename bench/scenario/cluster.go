package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/node/launch"
)

// NodeInfo describes one node of the experiment's cluster.
type NodeInfo struct {
	ID       string `json:"id"`
	Zone     string `json:"zone"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	LogFile  string `json:"log_file"`
	PID      int    `json:"pid"`
}

// layoutZones are the nodes and their zones: two zones of two nodes and a
// third of one, so that with RF 3 on a zone-aware ring every key has a
// replica in each zone.
var layoutZones = []struct{ id, zone string }{
	{"n1", "a"}, {"n2", "a"}, {"n3", "b"}, {"n4", "b"}, {"n5", "c"},
}

// cluster is the experiment's five node processes.
type cluster struct {
	*launch.Cluster
	log *slog.Logger
}

// startCluster starts the five nodes under dir and returns once they are
// all started (not yet healthy: see waitHealthy). On error it stops the
// nodes it started.
func startCluster(ctx context.Context, cfg Config, dir string) (*cluster, error) {
	zones := make([]string, len(layoutZones))
	for i, z := range layoutZones {
		zones[i] = z.zone
	}
	lcfg := launch.Config{
		Binary: cfg.Binary, Nodes: len(layoutZones), Dir: dir, Zones: zones, Insecure: cfg.Insecure,
		Args: []string{"--unsafe-test-hooks", "--tuner-interval", cfg.TunerInterval.String(), "--tuner-dwell", cfg.TunerDwell.String(),
			"--health-window", cfg.HealthWindow.String()},
		Name: "adaptive scenario", Logger: cfg.Logger,
	}
	if !cfg.Insecure {
		if err := lcfg.Secure(filepath.Join(cfg.Out, "certs")); err != nil {
			return nil, err
		}
	}
	l, err := launch.New(lcfg)
	if err != nil {
		return nil, err
	}
	c := &cluster{Cluster: l, log: cfg.Logger}
	for _, n := range l.Nodes() {
		if err := l.StartNode(n.ID); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// stop stops every node it started: SIGTERM first, so that the node closes
// its stores cleanly, then SIGKILL after a grace period. It is safe to call
// more than once.
func (c *cluster) stop() {
	if _, killed, err := c.StopAll(10 * time.Second); err != nil || len(killed) > 0 {
		c.log.Warn("nodes did not stop in time", "killed", killed, "err", err)
	}
}

// info lists the nodes.
func (c *cluster) info() []NodeInfo {
	var out []NodeInfo
	for _, n := range c.Nodes() {
		out = append(out, NodeInfo{ID: n.ID, Zone: n.Zone, GRPCAddr: n.GRPC, HTTPAddr: n.HTTP, LogFile: n.LogFile, PID: n.PID()})
	}
	return out
}

// endpoints are the nodes' gRPC addresses.
func (c *cluster) endpoints() []string { return c.Endpoints() }

// waitHealthy waits until every node answers /healthz with 200 and sees all
// five nodes alive in its own cluster status, or limit passes. A node that
// exits fails the wait at once, with the last line of its log.
func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := c.WaitReady(ctx, c.IDs(), nil); err != nil {
		return fmt.Errorf("cluster not healthy after %v: %w", limit, err)
	}
	return nil
}

// injectZones delays every node's requests to every peer: intra within a
// zone, cross between zones.
func (c *cluster) injectZones(ctx context.Context, intra, cross time.Duration) error {
	for _, from := range c.Nodes() {
		for _, to := range c.Nodes() {
			if from == to {
				continue
			}
			d := cross
			if from.Zone == to.Zone {
				d = intra
			}
			if err := c.Hook(ctx, from.ID, "link", url.Values{"to": {to.ID}, "delay": {d.String()}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// setSlow makes node id delay its replies to peers by d (0: undo).
func (c *cluster) setSlow(ctx context.Context, id string, d time.Duration) error {
	return c.Hook(ctx, id, "slow", url.Values{"delay": {d.String()}})
}

// nodeCounters are the node metrics summed over the cluster at each
// phase's end: they show replica requests that failed or were refused (a
// stale configuration epoch is one) while the tuner changed arm_adaptive.
var nodeCounters = []string{"adaptkv_replica_errors_total", "adaptkv_epoch_retries_total", "adaptkv_hints_stored_total"}

// counters sums the named counters over every node's /metrics. A node that
// does not answer is left out; the error says which.
func (c *cluster) counters(ctx context.Context, names []string) (map[string]float64, error) {
	out := map[string]float64{}
	var errs []error
	for _, n := range c.Nodes() {
		if err := c.scrape(ctx, n.HTTP, names, out); err != nil {
			errs = append(errs, fmt.Errorf("node %s metrics: %w", n.ID, err))
		}
	}
	return out, errors.Join(errs...)
}

func (c *cluster) scrape(ctx context.Context, httpAddr string, names []string, into map[string]float64) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range names {
			// "name value" or "name{labels} value": sum over the labels.
			rest, ok := strings.CutPrefix(line, name)
			if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) == 0 {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(f[0], &v); err == nil {
				into[name] += v
			}
		}
	}
	return sc.Err()
}
