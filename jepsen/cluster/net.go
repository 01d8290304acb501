package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChainPrefix starts the name of every iptables chain the harness creates:
// AKVJ-<harness pid>-<random>. A chain whose harness is gone is removed by
// SweepStaleChains.
const ChainPrefix = "AKVJ-"

// CheckNet reports what is missing for network partitions: root, the
// iptables command, and an iptables that works here. The error says what to
// do.
func CheckNet(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network partitions need root: they install iptables DROP rules between the nodes' loopback addresses; run as root, or leave partition out of --nemesis")
	}
	path, err := exec.LookPath("iptables")
	if err != nil {
		return fmt.Errorf("network partitions need the iptables command, which is not installed (apt-get install iptables): %w", err)
	}
	if out, err := exec.CommandContext(ctx, path, "-w", "-L", "INPUT", "-n").CombinedOutput(); err != nil {
		return fmt.Errorf("iptables does not work here (%s): %v; partitions need a kernel with netfilter and the NET_ADMIN capability", strings.TrimSpace(string(out)), err)
	}
	return nil
}

func iptables(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Grudge maps a node to the nodes whose packets it drops.
type Grudge map[string][]string

// Cut reports whether traffic between a and b is cut in either direction
// (TCP needs both, so one direction cuts a connection).
func (g Grudge) Cut(a, b string) bool {
	for _, x := range g[a] {
		if x == b {
			return true
		}
	}
	for _, x := range g[b] {
		if x == a {
			return true
		}
	}
	return false
}

// PortRange is the ports a cluster's nodes listen on, the same on every
// node address (see Cluster.Ports). The zero value means every port.
type PortRange struct{ First, Last int }

// Net is the run's own iptables chain, jumped to from INPUT, in which
// partitions are DROP rules between node addresses. Close removes it.
type Net struct {
	chain string
	hosts map[string]string // node ID -> address
	ports PortRange
	log   *slog.Logger

	mu     sync.Mutex
	closed bool
}

// NewNet creates the chain and the jump to it. hosts maps node IDs to their
// addresses; ports are the cluster's ports (Cluster.Ports), to which the
// rules are confined, so that a partition cuts no other cluster that runs
// on the same addresses (another harness run, another test process). Call
// CheckNet first for a clear message when this cannot work.
func NewNet(ctx context.Context, hosts map[string]string, ports PortRange, log *slog.Logger) (*Net, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ports != (PortRange{}) && (ports.First < 1 || ports.Last > 65535 || ports.First > ports.Last) {
		return nil, fmt.Errorf("net: port range %d-%d", ports.First, ports.Last)
	}
	chain := fmt.Sprintf("%s%d-%04x", ChainPrefix, os.Getpid(), rand.IntN(0x10000))
	n := &Net{chain: chain, hosts: hosts, ports: ports, log: log}
	if err := iptables(ctx, "-N", chain); err != nil {
		return nil, err
	}
	if err := iptables(ctx, "-I", "INPUT", "1", "-j", chain); err != nil {
		iptables(ctx, "-X", chain)
		return nil, err
	}
	log.Info("iptables chain created", "chain", chain)
	return n, nil
}

// Chain returns the chain's name.
func (n *Net) Chain() string { return n.chain }

// AddHost makes node id at address host known to later partitions: a node
// added to the running cluster (the membership nemesis) is cut like the
// others. The rules in force are left as they are.
func (n *Net) AddHost(id, host string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[id]; ok && h != host {
		return fmt.Errorf("net: node %s is already at %s, not %s", id, h, host)
	}
	hosts := make(map[string]string, len(n.hosts)+1)
	for k, v := range n.hosts {
		hosts[k] = v
	}
	hosts[id] = host
	n.hosts = hosts
	return nil
}

// Partition replaces the chain's rules with the grudge: for every node and
// every node it drops, DROP rules for packets from the latter's address to
// the former's that come from or go to one of the cluster's ports (node
// traffic always has one end on a node's port: the other end of a
// connection a node opens is the peer's listening port).
func (n *Net) Partition(ctx context.Context, g Grudge) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("net: closed")
	}
	if err := iptables(ctx, "-F", n.chain); err != nil {
		return err
	}
	dsts := make([]string, 0, len(g))
	for d := range g {
		dsts = append(dsts, d)
	}
	sort.Strings(dsts)
	for _, dst := range dsts {
		dh, ok := n.hosts[dst]
		if !ok {
			return fmt.Errorf("net: unknown node %q", dst)
		}
		for _, src := range g[dst] {
			sh, ok := n.hosts[src]
			if !ok {
				return fmt.Errorf("net: unknown node %q", src)
			}
			for _, rule := range n.rules(sh, dh) {
				if err := iptables(ctx, append([]string{"-A", n.chain}, rule...)...); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rules returns the match and target of the DROP rules for packets from
// src to dst.
func (n *Net) rules(src, dst string) [][]string {
	if n.ports == (PortRange{}) {
		return [][]string{{"-s", src, "-d", dst, "-j", "DROP"}}
	}
	ports := fmt.Sprintf("%d:%d", n.ports.First, n.ports.Last)
	var out [][]string
	for _, proto := range []string{"tcp", "udp"} {
		out = append(out, []string{"-s", src, "-d", dst, "-p", proto, "-m", "multiport", "--ports", ports, "-j", "DROP"})
	}
	return out
}

// Heal removes every rule of the chain.
func (n *Net) Heal(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	return iptables(ctx, "-F", n.chain)
}

// Close removes the jump and the chain. It is idempotent, and uses its own
// deadline so that it works when ctx is already canceled (Ctrl-C).
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	return removeChain(n.chain)
}

func removeChain(chain string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Remove every jump (normally one).
	for i := 0; i < 10 && iptables(ctx, "-D", "INPUT", "-j", chain) == nil; i++ {
	}
	var errs []error
	if err := iptables(ctx, "-F", chain); err != nil {
		errs = append(errs, err)
	}
	if err := iptables(ctx, "-X", chain); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SweepStaleChains removes the chains left by harness processes that are
// gone (killed before they could clean up) and returns their names.
func SweepStaleChains(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-S").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables -S: %w", err)
	}
	var removed []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "-N" || !strings.HasPrefix(f[1], ChainPrefix) {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(f[1], ChainPrefix), "-")
		pid, err := strconv.Atoi(parts[0])
		if err != nil || pid <= 0 {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its harness still runs
		}
		if err := removeChain(f[1]); err == nil {
			removed = append(removed, f[1])
		}
	}
	return removed, nil
}

// ChainExists reports whether an iptables chain of that name exists.
func ChainExists(ctx context.Context, chain string) bool {
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-S").Output()
	return err == nil && bytes.Contains(out, []byte("-N "+chain+"\n"))
}

// Probe is the result of one connection attempt between two node
// addresses.
type Probe struct {
	From, To string
	// Cut is true when the attempt timed out: packets are dropped. A
	// refused connection (the target is down) still proves packets flow.
	Cut bool
	// NotMade is true when the caller's context ended before the attempt
	// could prove anything: Cut is then false and meaningless.
	NotMade bool
	Err     string
}

// ProbeLinks tries a TCP connection from each node's address to every
// other node's gRPC address, bound to the source address as node traffic
// is, and reports which pairs are cut. timeout is the time after which an
// unanswered connection counts as cut. An attempt cut short by the end of
// ctx is reported NotMade: a dial with an expired context fails with an
// "i/o timeout" without sending a packet.
func (c *Cluster) ProbeLinks(ctx context.Context, timeout time.Duration) []Probe {
	var mu sync.Mutex
	var out []Probe
	var wg sync.WaitGroup
	for _, a := range c.Nodes() {
		for _, b := range c.Nodes() {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := Probe{From: a.ID, To: b.ID}
				d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(a.Host)}}
				conn, err := d.DialContext(ctx, "tcp", b.GRPC)
				switch {
				case err == nil:
					conn.Close()
				case errors.Is(err, syscall.ECONNREFUSED):
					p.Err = "refused"
				case ctx.Err() != nil:
					p.NotMade = true
					p.Err = "not probed: " + err.Error()
				default:
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						p.Cut = true
					}
					p.Err = err.Error()
				}
				mu.Lock()
				out = append(out, p)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	return out
}

// VerifyPartition proves that the network matches the grudge: every pair
// the grudge cuts times out, every other pair connects (or is refused by a
// node that is down). It returns a one-line account, or an error naming the
// pairs that are wrong, or, when ctx ended before every pair was probed,
// an error wrapping ctx's.
func (c *Cluster) VerifyPartition(ctx context.Context, g Grudge) (string, error) {
	probes := c.ProbeLinks(ctx, 500*time.Millisecond)
	for _, p := range probes {
		if p.NotMade {
			return "", fmt.Errorf("network not verified: %s->%s not probed before the deadline: %w", p.From, p.To, context.Cause(ctx))
		}
	}
	var wrong []string
	cut, open := 0, 0
	for _, p := range probes {
		want := g.Cut(p.From, p.To)
		if p.Cut {
			cut++
		} else {
			open++
		}
		if p.Cut != want {
			wrong = append(wrong, fmt.Sprintf("%s->%s cut=%v want %v (%s)", p.From, p.To, p.Cut, want, p.Err))
		}
	}
	if len(wrong) > 0 {
		return "", fmt.Errorf("network does not match the partition: %s", strings.Join(wrong, "; "))
	}
	return fmt.Sprintf("TCP probes between node addresses: %d directed links cut, %d open, as intended", cut, open), nil
}
