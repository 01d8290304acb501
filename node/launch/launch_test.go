package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/internal/testbin"
)

// nodeBin is cmd/adaptkv, built once by TestMain.
var nodeBin string

func TestMain(m *testing.M) { testbin.Main(m, &nodeBin) }

// exists reports whether pid names a process (a zombie counts: the
// launcher must have reaped what it started).
func exists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// start lays out and starts a cluster for a test, closed at its end.
func start(t *testing.T, ctx context.Context, cfg Config) *Cluster {
	t.Helper()
	cfg.Binary = nodeBin
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStartStopThreeNodes starts three real node processes, each on its own
// loopback address, waits until they see each other, and checks that Kill,
// a restart and StopAll leave no process behind.
func TestStartStopThreeNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	certs := t.TempDir()
	if err := CreateCerts(certs, []string{"127.0.74.2", "127.0.74.3", "127.0.74.4"}); err != nil {
		t.Fatal(err)
	}
	c := start(t, ctx, Config{Nodes: 3, Host: "127.0.74.2", HostPerNode: true, CertsDir: certs, Args: []string{"--in-memory"}})
	pids := c.PIDs()
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	for i, n := range c.Nodes() {
		if want := fmt.Sprintf("127.0.74.%d:%d", i+2, c.Config().BasePort); n.GRPC != want {
			t.Errorf("%s grpc %s, want %s", n.ID, n.GRPC, want)
		}
		b, err := os.ReadFile(n.PIDFile)
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(pids[n.ID]) {
			t.Errorf("%s pid file %q (%v), want %d", n.ID, b, err, pids[n.ID])
		}
	}

	if err := c.Kill("n3"); err != nil {
		t.Fatal(err)
	}
	if exists(pids["n3"]) || c.Node("n3").State() != Stopped || c.Healthz(ctx, "n3") == nil {
		t.Fatalf("n3 (pid %d) still there after Kill", pids["n3"])
	}
	if err := c.StartNode("n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, c.IDs(), nil); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	restarted := c.PIDs()["n3"]
	if restarted == pids["n3"] || restarted == 0 {
		t.Fatalf("n3 pid %d after restart (was %d)", restarted, pids["n3"])
	}
	pids["n3"] = restarted

	stopped, killed, err := c.StopAll(20 * time.Second)
	if err != nil || len(stopped) != 3 || len(killed) != 0 {
		t.Fatalf("StopAll: stopped %v killed %v err %v", stopped, killed, err)
	}
	for id, pid := range pids {
		if exists(pid) {
			t.Errorf("%s (pid %d) still exists after StopAll", id, pid)
		}
	}
	if crashes := c.Crashes(); len(crashes) != 0 {
		t.Errorf("crashes: %v", crashes)
	}
}

// TestPauseResume: a paused node stops answering and is not ready; resumed,
// it is.
func TestPauseResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := start(t, ctx, Config{Insecure: true, Nodes: 1, Args: []string{"--in-memory"}})
	if err := c.Pause("n1"); err != nil {
		t.Fatal(err)
	}
	if c.Node("n1").State() != Paused {
		t.Fatalf("state %s after Pause", c.Node("n1").State())
	}
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := c.WaitReady(wctx, c.IDs(), nil)
	wcancel()
	var nr *NotReadyError
	if !errors.As(err, &nr) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "n1 (paused)") {
		t.Fatalf("WaitReady on a paused node: %v", err)
	}
	if err := c.Resume("n1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, c.IDs(), nil); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	pid := c.PIDs()["n1"]
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	if err := c.Stop(sctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if exists(pid) {
		t.Fatalf("n1 (pid %d) exists after Stop", pid)
	}
}

// TestExitDuringStartup: a node that cannot start fails the wait at once
// with its log's last line, and counts as a crash.
func TestExitDuringStartup(t *testing.T) {
	c, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 1, Dir: t.TempDir(), Args: []string{"--no-such-flag"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Start(ctx)
	var nr *NotRunningError
	if !errors.As(err, &nr) || !nr.Started || !strings.Contains(nr.LastLine, "no-such-flag") {
		t.Fatalf("Start with a bad flag: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the wait ran to its deadline instead of failing at the exit")
	}
	if len(c.Crashes()) != 1 {
		t.Fatalf("crashes %v", c.Crashes())
	}
}

// TestDetachedAdopt: a detached node outlives its Cluster value; a second
// New on the same folder adopts it from its PID file and stops it.
func TestDetachedAdopt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg := Config{Binary: nodeBin, Insecure: true, Nodes: 1, Dir: dir, Detach: true, Args: []string{"--in-memory"}}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		first.Close()
		t.Fatal(err)
	}
	pid := first.PIDs()["n1"]
	t.Cleanup(func() {
		if NodeRunning(pid, "n1") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	cfg.BasePort = first.Config().BasePort
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := second.PIDs()["n1"]; got != pid || second.Node("n1").State() != Running {
		t.Fatalf("adopted pid %d state %s, want %d running", got, second.Node("n1").State(), pid)
	}
	if err := second.StartNode("n1"); err != nil || second.PIDs()["n1"] != pid {
		t.Fatalf("StartNode on a running adopted node: %v, pid %d", err, second.PIDs()["n1"])
	}
	if err := second.Close(); err != nil || !NodeRunning(pid, "n1") {
		t.Fatalf("Close killed an adopted node (err %v)", err)
	}
	stopped, _, err := second.StopAll(20 * time.Second)
	if err != nil || len(stopped) != 1 {
		t.Fatalf("StopAll: %v %v", stopped, err)
	}
	if NodeRunning(pid, "n1") {
		t.Fatalf("n1 (pid %d) runs after StopAll", pid)
	}
	if third, err := New(cfg); err != nil || third.Node("n1").State() != Stopped {
		t.Fatalf("after StopAll a new launch adopts: %v", err)
	}
}

func TestIsNodeCmdline(t *testing.T) {
	for _, tt := range []struct {
		cmdline, id string
		want        bool
	}{
		{"/tmp/x/adaptkv\x00node\x00--id\x00n2\x00--data-dir\x00/d\x00", "n2", true},
		{"/tmp/x/adaptkv\x00node\x00--id=n2\x00", "n2", true},
		{"/tmp/x/adaptkv\x00node\x00--id\x00n1\x00", "n2", false},
		{"/usr/bin/sleep\x00node\x00--id\x00n2\x00", "n2", false},
		{"/tmp/x/adaptkv\x00cluster\x00up\x00", "n2", false},
		{"", "n2", false}, // a zombie
	} {
		if got := isNodeCmdline([]byte(tt.cmdline), tt.id); got != tt.want {
			t.Errorf("isNodeCmdline(%q, %q) = %v", tt.cmdline, tt.id, got)
		}
	}
}

// TestLayout: ports, folders and command lines follow the documented
// layout, and a picked base port lies below the ephemeral range.
func TestLayout(t *testing.T) {
	c, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 3, Dir: "/d", Zones: []string{"a", "a", "b"}, Args: []string{"--x"}})
	if err != nil {
		t.Fatal(err)
	}
	base := c.Config().BasePort
	if base < 10000 || base+30 > EphemeralLow() && EphemeralLow() > 10100 {
		t.Fatalf("base port %d outside [10000, %d)", base, EphemeralLow())
	}
	n3 := c.Node("n3")
	if got, want := n3.HTTP, fmt.Sprintf("127.0.0.1:%d", base+23); got != want {
		t.Fatalf("n3 http address %s, want %s", got, want)
	}
	if n3.DataDir != "/d/n3" || n3.LogFile != "/d/n3/node.log" || n3.PIDFile != "/d/n3/pid" || n3.Zone != "b" {
		t.Fatalf("n3 layout %+v", n3)
	}
	args := strings.Join(c.Args(c.Node("n1")), " ")
	for _, want := range []string{fmt.Sprintf("--seeds 127.0.0.1:%d,127.0.0.1:%d", base+11, base+21), "--bootstrap-expect 3", "--zone a", "--id n1"} {
		if !strings.Contains(args, want) {
			t.Errorf("n1 args %q lack %q", args, want)
		}
	}
	if !strings.HasSuffix(args, " --x") {
		t.Errorf("n1 args %q do not end with Config.Args", args)
	}
	j, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 2, Dir: "/d", DataSubdir: "data", Host: "127.0.75.2", HostPerNode: true, BasePort: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if n2 := j.Node("n2"); n2.GRPC != "127.0.75.3:20000" || n2.HTTP != "127.0.75.3:20003" || n2.DataDir != "/d/n2/data" {
		t.Fatalf("per-node hosts: n2 %+v", n2)
	}
	for _, bad := range []Config{
		{Dir: "/d", Insecure: true},
		{Binary: nodeBin, Insecure: true},
		{Binary: nodeBin, Dir: "/d", Insecure: true, Nodes: 201},
		{Binary: nodeBin, Dir: "/d", Insecure: true, Host: "10.0.0.1", HostPerNode: true},
		{Binary: nodeBin, Dir: "/d", Insecure: true, Nodes: 2, Zones: []string{"a"}},
		{Binary: nodeBin, Dir: "/d", Insecure: true, BasePort: 65530},
		{Binary: nodeBin, Dir: "/d"},                                 // neither secure nor insecure
		{Binary: nodeBin, Dir: "/d", CertsDir: "/c", Insecure: true}, // both
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// TestAddNode: a node added to a laid-out cluster takes the next address
// on the same ports, joins (--bootstrap-expect 0, every other node as a
// seed), and leaves the first nodes' --bootstrap-expect alone; past the
// /24 it is refused.
func TestAddNode(t *testing.T) {
	c, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 2, Dir: "/d", DataSubdir: "data", Host: "127.0.76.252", HostPerNode: true, BasePort: 20100})
	if err != nil {
		t.Fatal(err)
	}
	n3, err := c.AddNode("")
	if err != nil {
		t.Fatal(err)
	}
	if n3.ID != "n3" || n3.GRPC != "127.0.76.254:20100" || n3.DataDir != "/d/n3/data" || !n3.Added || n3.State() != Stopped {
		t.Fatalf("added node %+v", n3)
	}
	if got := c.IDs(); strings.Join(got, ",") != "n1,n2,n3" || c.Node("n3") != n3 {
		t.Fatalf("IDs after AddNode %v", got)
	}
	for _, tt := range []struct{ id, want string }{
		{"n3", "--bootstrap-expect 0 --seeds 127.0.76.252:20101,127.0.76.253:20101"},
		{"n1", "--bootstrap-expect 2 --seeds 127.0.76.253:20101,127.0.76.254:20101"},
	} {
		if args := strings.Join(c.Args(c.Node(tt.id)), " "); !strings.Contains(args, tt.want) {
			t.Errorf("%s args %q lack %q", tt.id, args, tt.want)
		}
	}
	if _, err := c.AddNode(""); err == nil || !strings.Contains(err.Error(), "/24") {
		t.Fatalf("a fourth node past 127.0.76.254: %v", err)
	}
	// A removed node is nobody's seed and does not start again.
	if err := c.MarkRemoved("n2"); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(c.Args(c.Node("n1")), " "); !strings.HasSuffix(args, "--seeds 127.0.76.254:20101") {
		t.Errorf("n1 args with n2 removed: %q", args)
	}
	if err := c.StartNode("n2"); err == nil || !strings.Contains(err.Error(), "removed") || c.Node("n2").State() != Stopped {
		t.Errorf("StartNode of a removed node: %v", err)
	}
	if err := c.MarkRemoved("n9"); err == nil {
		t.Error("MarkRemoved of an unknown node accepted")
	}
	c.Close()
	if _, err := c.AddNode(""); err == nil {
		t.Fatal("AddNode after Close accepted")
	}
}

// TestAddReplacement: a replacement is laid out as the next node, joins with
// --bootstrap-expect 0 and names the dead member with --replace; an unknown
// dead member is refused.
func TestAddReplacement(t *testing.T) {
	c, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 3, Dir: "/d", Host: "127.0.77.2", HostPerNode: true, BasePort: 20100})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.AddReplacement("", "n9"); err == nil {
		t.Fatal("a replacement of an unknown node accepted")
	}
	n4, err := c.AddReplacement("", "n2")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(c.Args(n4), " ")
	if n4.ID != "n4" || !n4.Added || n4.Replace != "n2" || !strings.Contains(args, "--bootstrap-expect 0") || !strings.Contains(args, "--replace n2") {
		t.Fatalf("replacement %+v, args %q", n4, args)
	}
	if args := strings.Join(c.Args(c.Node("n1")), " "); strings.Contains(args, "--replace") {
		t.Errorf("n1 args %q name a replacement", args)
	}
}

// TestExpectExit: a node whose process ends other than by the launcher's
// signals (here a SIGTERM sent behind its back, as a decommissioned node
// exits by itself) is a crash, unless ExpectExit said it would end.
func TestExpectExit(t *testing.T) {
	c, err := New(Config{Binary: nodeBin, Insecure: true, Nodes: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ExpectExit("n1", true); err == nil {
		t.Fatal("ExpectExit of a stopped node accepted")
	}
	for _, id := range []string{"n1", "n2"} {
		if err := c.StartNode(id); err != nil {
			t.Fatal(err)
		}
		if err := c.ExpectExit(id, true); err != nil {
			t.Fatal(err)
		}
		if id == "n2" {
			c.ExpectExit(id, false)
		}
		if err := syscall.Kill(c.Node(id).PID(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !c.Node(id).waitExit(10 * time.Second) {
			t.Fatalf("%s did not exit", id)
		}
	}
	crashes := strings.Join(c.Crashes(), "\n")
	if !strings.Contains(crashes, "n2 ") || strings.Contains(crashes, "n1 ") {
		t.Fatalf("crashes %q; want n2's exit only", crashes)
	}
}

// TestRelayout: a later launcher lays out an added node again on the same
// address even when its ports are taken (by the node itself, say), where
// AddNode refuses them.
func TestRelayout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// Node n2's block starts at the taken port.
	cfg := Config{Binary: nodeBin, Insecure: true, Nodes: 1, Dir: t.TempDir(), BasePort: port - DefaultPortStride, Detach: true}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddNode(""); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("AddNode on taken ports: %v", err)
	}
	n2, err := c.Relayout("")
	if err != nil {
		t.Fatal(err)
	}
	if n2.ID != "n2" || !n2.Added || n2.GRPC != net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) || n2.State() != Stopped {
		t.Fatalf("relaid node %+v", n2)
	}
}
