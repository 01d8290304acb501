package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
)

// TestNodeRefusesToStartInsecurely: `adaptkv node` without certificates
// and without --insecure exits at once with a usage error that says how to
// make them; with --insecure it starts and warns; with a --certs-dir that
// lacks a node certificate it names the missing file.
func TestNodeRefusesToStartInsecurely(t *testing.T) {
	base := []string{"node", "--id", "n1", "--in-memory", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--raft-addr", "127.0.0.1:0", "--http-addr", ""}
	r := runBin(t, []string{envName("dir") + "=" + t.TempDir()}, nil, base...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "no certificates") || !strings.Contains(r.stderr, "adaptkv cert create-ca") ||
		!strings.Contains(r.stderr, "--insecure") {
		t.Fatalf("node without certificates: want exit %d saying how to make them, got %v", exitUsage, r)
	}

	// A directory with a CA but no node certificate.
	certs := t.TempDir()
	if err := security.CreateCA(certs, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, nil, nil, append(base, "--certs-dir", certs)...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "node.crt") || !strings.Contains(r.stderr, "create-node") {
		t.Fatalf("node with a CA only: want exit %d naming node.crt, got %v", exitUsage, r)
	}
	r = runBin(t, nil, nil, append(base, "--certs-dir", certs, "--insecure")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "choose one") {
		t.Fatalf("--insecure with --certs-dir: %v", r)
	}

	// --insecure starts, with a warning at start.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append(base, "--insecure")...)
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stderr)
	var warned bool
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "running insecure") {
			warned = true
		}
		if strings.Contains(line, "node started") {
			break
		}
	}
	if !warned {
		t.Fatal("an --insecure node started without the warning")
	}
	go io.Copy(io.Discard, stderr)
}

// cleanEnv is the test's environment without ADAPTKV_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// TestCertCommands: the certificate tool makes a CA, node and client
// certificates, refuses to overwrite without --overwrite and refuses bad
// input as usage errors, and lists what it made.
func TestCertCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	run := func(args ...string) result {
		return runBin(t, nil, nil, append(args, "--certs-dir", dir, "-o", "json")...)
	}
	must := func(args ...string) result {
		t.Helper()
		r := run(args...)
		if r.code != 0 {
			t.Fatalf("adaptkv %s: %v", strings.Join(args, " "), r)
		}
		return r
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cert", "create-node", "--host", "10.0.0.1"}, "create-ca"}, // no CA yet
		{[]string{"cert", "create-ca", "--validity", "soon"}, "--validity \"soon\""},
		{[]string{"cert", "create-ca", "--validity", "-3d"}, "must be positive"},
	} {
		r := run(tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: want a failure saying %q, got %v", tc.args, tc.want, r)
		}
	}
	must("cert", "create-ca", "--validity", "3650d")
	for _, f := range []string{security.CACertFile, security.CAKeyFile, security.GossipKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("create-ca did not write %s: %v", f, err)
		}
	}
	gossip, _ := os.ReadFile(filepath.Join(dir, security.GossipKeyFile))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "create-ca"}, exitUsage, "already exists"},
		{[]string{"cert", "create-node"}, exitUsage, "--host is required"},
		{[]string{"cert", "create-client", "Bad!"}, exitUsage, "invalid user name"},
		{[]string{"cert", "create-client", "node"}, exitUsage, "reserved"},
		{[]string{"cert", "create-client"}, exitUsage, "accepts 1 arg"},
	} {
		if r := run(tc.args...); r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: want exit %d saying %q, got %v", tc.args, tc.code, tc.want, r)
		}
	}
	must("cert", "create-node", "--host", "10.0.0.1,db1.example.com")
	must("cert", "create-client", "alice", "--validity", "30d")
	if r := run("cert", "create-node", "--host", "10.0.0.2"); r.code != exitUsage || !strings.Contains(r.stderr, "--overwrite") {
		t.Errorf("create-node over an existing one: %v", r)
	}
	must("cert", "create-node", "--host", "10.0.0.2", "--overwrite")
	// create-ca --overwrite replaces the CA but keeps the gossip key.
	must("cert", "create-ca", "--overwrite")
	if g, _ := os.ReadFile(filepath.Join(dir, security.GossipKeyFile)); string(g) != string(gossip) {
		t.Error("create-ca --overwrite replaced gossip.key")
	}

	var list struct {
		Dir   string     `json:"certs_dir"`
		Files []certJSON `json:"files"`
	}
	if err := json.Unmarshal([]byte(must("cert", "list").stdout), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]certJSON{}
	for _, f := range list.Files {
		got[f.File] = f
	}
	if len(list.Files) != 4 || list.Files[0].File != security.CACertFile {
		t.Fatalf("cert list: %+v", list.Files)
	}
	node, alice := got[security.NodeCertFile], got[security.ClientCertFile("alice")]
	if node.Kind != "node" || !strings.Contains(strings.Join(node.Hosts, ","), "10.0.0.2") || strings.Contains(strings.Join(node.Hosts, ","), "10.0.0.1") {
		t.Errorf("node certificate after --overwrite: %+v", node)
	}
	if alice.Kind != "client" || alice.Identity != "user alice" || alice.NotAfter == nil || time.Until(*alice.NotAfter) > 31*24*time.Hour {
		t.Errorf("alice: %+v", alice)
	}
	if got[security.GossipKeyFile].Kind != "gossip-key" || got[security.CACertFile].Kind != "ca" {
		t.Errorf("cert list: %+v", list.Files)
	}
	// Signed by the CA that was replaced, the node certificate no longer
	// loads, and the node says so rather than starting.
	if _, err := security.LoadNode(dir); err == nil {
		t.Error("a node certificate of the replaced CA loads")
	}
}

// TestSecureClusterUp: `cluster up` makes the certificates and starts the
// nodes secure; every command then works with no flags; status shows each
// node secure with its certificate's expiry, the metric has it, pprof is
// off; a plaintext call fails and says why; and the node certificate is
// rotated (create-node --overwrite, then SIGHUP) under a running workload
// without one failed request.
func TestSecureClusterUp(t *testing.T) {
	tc := startCluster(t, 3)
	certs := filepath.Join(tc.dir, certsSubdir)
	for _, f := range []string{security.CACertFile, security.NodeCertFile, security.ClientCertFile("root"), security.GossipKeyFile} {
		if _, err := os.Stat(filepath.Join(certs, f)); err != nil {
			t.Fatalf("cluster up did not make %s: %v", f, err)
		}
	}
	tc.mustRun("put", "hello", "world")
	if g := getResult(t, tc.mustRun("get", "hello")); g.Value == nil || *g.Value != "world" {
		t.Fatalf("get hello: %+v", g)
	}

	st := tc.status()
	for _, m := range st.Members {
		if m.Security == nil || !m.Security.Secure || m.Security.CertNotAfter == nil || time.Until(*m.Security.CertNotAfter) < 4*365*24*time.Hour {
			t.Fatalf("status of %s: security %+v; want secure with a certificate valid for years", m.ID, m.Security)
		}
	}
	if r := tc.mustRun("status", "-o", "table"); !strings.Contains(r.stdout, "secure, cert expires") {
		t.Errorf("status table lacks the security column: %s", r.stdout)
	}
	n1 := tc.layout().Nodes[0]
	if v := scrapeExpiry(t, n1.HTTPAddr, "node"); v < 4*365*24*3600 {
		t.Errorf("adaptkv_cert_expiry_seconds{kind=node} = %v", v)
	}
	if v := scrapeExpiry(t, n1.HTTPAddr, "ca"); v < 9*365*24*3600 {
		t.Errorf("adaptkv_cert_expiry_seconds{kind=ca} = %v", v)
	}
	resp, err := http.Get("http://" + n1.HTTPAddr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("pprof without --pprof: %s; want 404", resp.Status)
	}

	// Plaintext to a secure cluster: refused, and the message says why.
	expectFail(t, tc.run(nil, "get", "hello", "--insecure", "--timeout", "2s"), exitFailure, "drop --insecure")
	// The wrong user's certificate is not there: a usage error naming it.
	expectFail(t, tc.run(nil, "get", "hello", "--user", "alice"), exitUsage, "client.alice.crt")

	// Rotation under load: a bounded workload of quorum writes and reads
	// through one client (its connections stay up) while the node
	// certificate is replaced and every node told with SIGHUP.
	cl := tc.client(client.Config{RequestTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		ops, failed atomic.Int64
		firstErr    atomic.Value
		wg          sync.WaitGroup
		stop        atomic.Bool
	)
	q := client.WithConsistency(client.Quorum)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load(); i++ {
				k := []byte(fmt.Sprintf("rot/%d/%d", w, i%50))
				var err error
				if i%2 == 0 {
					_, err = cl.Put(ctx, k, []byte(strconv.Itoa(i)), q)
				} else {
					_, err = cl.Get(ctx, k, q)
				}
				ops.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	tc.mustRun("cert", "create-node", "--host", "127.0.0.1,localhost", "--validity", "100d", "--overwrite")
	for _, n := range tc.layout().live() {
		if err := syscall.Kill(n.PID, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %s: %v", n.ID, err)
		}
	}
	// Every node serves the new certificate: status (new connections,
	// new handshakes) shows its expiry in 100 days.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rotated := 0
		st := tc.status()
		for _, m := range st.Members {
			if m.Security != nil && m.Security.CertNotAfter != nil && time.Until(*m.Security.CertNotAfter) < 101*24*time.Hour {
				rotated++
			}
		}
		if rotated == len(st.Members) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes rotated 10 s after SIGHUP", rotated, len(st.Members))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first: %v", n, ops.Load(), firstErr.Load())
	}
	t.Logf("rotation under load: %d requests, 0 failed", ops.Load())
	if g := getResult(t, tc.mustRun("get", "hello")); g.Value == nil || *g.Value != "world" {
		t.Fatalf("get hello after the rotation: %+v", g)
	}
	if v := scrapeExpiry(t, n1.HTTPAddr, "node"); v > 101*24*3600 {
		t.Errorf("adaptkv_cert_expiry_seconds{kind=node} = %v after the rotation; want under 100 days", v)
	}
}

// status runs `adaptkv status` and parses it.
func (tc *testCluster) status() statusJSON {
	tc.t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(tc.mustRun("status", "-o", "json").stdout), &st); err != nil {
		tc.t.Fatal(err)
	}
	return st
}

// scrapeExpiry reads adaptkv_cert_expiry_seconds{kind} from a node's
// /metrics.
func scrapeExpiry(t *testing.T, httpAddr, kind string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := fmt.Sprintf("adaptkv_cert_expiry_seconds{kind=%q} ", kind)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s has no %s", httpAddr, strings.TrimSpace(prefix))
	return 0
}

// TestClusterUpInsecure: `cluster up --insecure` runs the cluster as before
// certificates (no certs folder, plaintext), later commands of the same
// folder need no flag, status says INSECURE; a secure cluster cannot be
// restarted --insecure.
func TestClusterUpInsecure(t *testing.T) {
	tc := &testCluster{t: t, dir: t.TempDir()}
	t.Cleanup(tc.killAll)
	if r := tc.run(nil, "cluster", "up", "--insecure", "--nodes", "1", "--base-port", strconv.Itoa(allocBasePort(t, 1)), "-o", "json"); r.code != 0 {
		tc.dumpLogs()
		t.Fatalf("cluster up --insecure: %v", r)
	}
	if _, err := os.Stat(filepath.Join(tc.dir, certsSubdir)); !os.IsNotExist(err) {
		t.Fatalf("cluster up --insecure made a certs folder (%v)", err)
	}
	tc.mustRun("put", "k", "v")
	if g := getResult(t, tc.mustRun("get", "k")); g.Value == nil || *g.Value != "v" {
		t.Fatalf("get k: %+v", g)
	}
	if st := tc.status(); len(st.Members) != 1 || st.Members[0].Security == nil || st.Members[0].Security.Secure {
		t.Fatalf("status of an insecure node: %+v", st.Members)
	}
	if r := tc.mustRun("status", "-o", "table"); !strings.Contains(r.stdout, "INSECURE") {
		t.Errorf("status table does not say INSECURE: %s", r.stdout)
	}
	b, _ := os.ReadFile(tc.layout().Nodes[0].LogFile)
	if !strings.Contains(string(b), "running insecure") {
		t.Error("the node's log has no warning that it runs insecure")
	}
	// A TLS client (certificates of some CA) to the plaintext cluster
	// fails and says what may be wrong.
	certs := t.TempDir()
	for _, args := range [][]string{{"cert", "create-ca"}, {"cert", "create-client", "root"}} {
		if r := runBin(t, nil, nil, append(args, "--certs-dir", certs)...); r.code != 0 {
			t.Fatal(r)
		}
	}
	expectFail(t, tc.run(nil, "get", "k", "--certs-dir", certs, "--timeout", "2s"), exitFailure, "--insecure")

	secure := startCluster(t, 1)
	r := secure.run(nil, "cluster", "up", "--insecure")
	if r.code != exitUsage || !strings.Contains(r.stderr, "cannot be restarted --insecure") {
		t.Fatalf("cluster up --insecure on a secure cluster: %v", r)
	}
}
