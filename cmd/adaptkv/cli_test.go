package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// TestCLI drives the binary through a user's session: cluster up, data and
// keyspace commands with and without flags, bad input, status, down.
func TestCLI(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3)

	// Running up again with every node running restarts nothing; a
	// different size is refused.
	var up upJSON
	r := tc.mustRun("cluster", "up", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || len(up.Started) != 0 || len(up.Nodes) != 3 {
		t.Fatalf("second cluster up: started %v, err %v\n%v", up.Started, err, r)
	}
	expectFail(t, tc.run(nil, "cluster", "up", "--nodes", "5"), exitUsage, "has 3 nodes, not 5")

	// put / get with defaults; JSON is the default when stdout is a pipe.
	tc.mustRun("put", "hello", "world")
	g := getResult(t, tc.mustRun("get", "hello"))
	if !g.Found || g.Value == nil || *g.Value != "world" || g.Receipt.Level != "quorum" || g.Receipt.N != 3 ||
		g.Receipt.Acked < g.Receipt.Required || g.Receipt.Required != 2 || g.Receipt.Coordinator == "" || g.Version == nil {
		t.Fatalf("get hello: %+v", g)
	}
	r = tc.mustRun("get", "hello", "-o", "table")
	if !strings.HasPrefix(r.stdout, "world\n") || !strings.Contains(r.stdout, "level=quorum acked=") || !strings.Contains(r.stdout, "of N=3") {
		t.Fatalf("get -o table: %v", r)
	}

	// Levels and custom quorums.
	tc.mustRun("put", "k2", "v2", "--consistency", "all")
	if g := getResult(t, tc.mustRun("get", "k2", "--consistency", "one")); *g.Value != "v2" || g.Receipt.Level != "one" || g.Receipt.Required != 1 {
		t.Fatalf("get --consistency one: %+v", g)
	}
	if g := getResult(t, tc.mustRun("get", "k2", "--r", "3", "--w", "1")); g.Receipt.Level != "custom" || g.Receipt.Required != 3 {
		t.Fatalf("get --r 3: %+v", g)
	}

	// Binary values come back as base64.
	r = tc.run(bytes.NewReader([]byte{0xff, 0x00, 0xfe}), "put", "bin", "-")
	if r.code != 0 {
		t.Fatal(r)
	}
	if g := getResult(t, tc.mustRun("get", "bin")); g.ValueEncoding != "base64" || *g.Value != "/wD+" {
		t.Fatalf("binary value: %+v", g)
	}
	r = tc.mustRun("get", "bin", "-o", "table")
	if !strings.Contains(r.stdout, "/wD+") || !strings.Contains(r.stdout, "base64") {
		t.Fatalf("binary value in a table: %v", r)
	}

	// del, then get of a missing key: found=false in JSON, status 1.
	tc.mustRun("del", "hello")
	r = tc.run(nil, "get", "hello")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("get of a deleted key: %v", r)
	}
	if g := getResult(t, r); g.Found || g.Value != nil {
		t.Fatalf("get of a deleted key: %+v", g)
	}

	// Sessions: put --session new prints a token (in JSON, and on stderr in
	// text output); get and del resume it and print the next one; a bad
	// token is a usage error.
	var w writeJSON
	r = tc.mustRun("put", "sess", "v1", "--session", "new", "--consistency", "one")
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil || w.Session == "" {
		t.Fatalf("put --session new: %v %+v", err, r)
	}
	if g := getResult(t, tc.mustRun("get", "sess", "--session", w.Session, "--consistency", "one")); *g.Value != "v1" || g.Session == "" {
		t.Fatalf("get --session: %+v", g)
	}
	r = tc.mustRun("del", "sess", "--session", w.Session, "-o", "table")
	if !strings.HasPrefix(r.stderr, "session ") {
		t.Fatalf("del --session -o table: token not on stderr: %v", r)
	}
	tok := strings.TrimSpace(strings.TrimPrefix(r.stderr, "session "))
	if r = tc.run(nil, "get", "sess", "--session", tok); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("get after the session's delete: %v", r)
	}
	expectFail(t, tc.run(nil, "get", "sess", "--session", "not-a-token!"), exitUsage, "--session: ")
	expectFail(t, tc.run(nil, "put", "sess", "v", "--session", ""), exitUsage, "malformed session token")

	// scan: prefix, range and limit.
	for _, k := range []string{"a/1", "a/2", "a/3", "b/1"} {
		tc.mustRun("put", k, "v-"+k)
	}
	if s := scanResult(t, tc.mustRun("scan", "--prefix", "a/")); len(s.Items) != 3 || s.Items[0].Key != "a/1" || s.Items[2].Value != "v-a/3" || s.More {
		t.Fatalf("scan --prefix a/: %+v", s)
	}
	if s := scanResult(t, tc.mustRun("scan", "--start", "a/2", "--end", "b/", "--limit", "1")); len(s.Items) != 1 || s.Items[0].Key != "a/2" || !s.More || s.NextStart == nil {
		t.Fatalf("scan range with limit: %+v", s)
	}
	if r := tc.mustRun("scan", "--prefix", "a/", "--limit", "2", "-o", "table"); !strings.Contains(r.stdout, "a/2") || !strings.Contains(r.stdout, "more keys follow") {
		t.Fatalf("scan table: %v", r)
	}

	// --endpoints and ADAPTKV_ENDPOINTS instead of the cluster folder.
	eps := strings.Join(tc.endpoints(), ",")
	empty := t.TempDir()
	certs := filepath.Join(tc.dir, certsSubdir)
	r = runBin(t, []string{envName("dir") + "=" + empty}, nil, "get", "k2", "--endpoints", eps, "--certs-dir", certs)
	if g := getResult(t, r); r.code != 0 || *g.Value != "v2" {
		t.Fatalf("get --endpoints: %v", r)
	}
	r = runBin(t, []string{envName("dir") + "=" + empty, envName("endpoints") + "=" + eps, envName("output") + "=table", envName("certs-dir") + "=" + certs}, nil, "get", "k2")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "v2\n") {
		t.Fatalf("get with ADAPTKV_ENDPOINTS and ADAPTKV_OUTPUT: %v", r)
	}
	expectFail(t, runBin(t, []string{envName("dir") + "=" + empty}, nil, "get", "k2"), exitFailure, "adaptkv cluster up")

	// Local reads of one replica.
	var lg localGetJSON
	r = tc.mustRun("get", "k2", "--node", "n1", "--local", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &lg); err != nil || !lg.Found || *lg.Value != "v2" || lg.Node != "n1" {
		t.Fatalf("get --local: %v %+v", err, lg)
	}
	expectFail(t, tc.run(nil, "get", "k2", "--node", "n9", "--local"), exitFailure, `node "n9" is not a member`)
	expectFail(t, tc.run(nil, "get", "k2", "--local"), exitUsage, "--node")

	// Keyspaces.
	tc.mustRun("keyspace", "create", "ks3", "--rf", "3", "--consistency", "one")
	var ks keyspaceJSON
	r = tc.mustRun("keyspace", "describe", "ks3")
	if err := json.Unmarshal([]byte(r.stdout), &ks); err != nil || ks.ReplicationFactor != 3 || ks.Consistency != "one" || ks.Epoch == 0 {
		t.Fatalf("keyspace describe: %v %+v", err, ks)
	}
	tc.mustRun("keyspace", "alter", "ks3", "--consistency", "all")
	var list []keyspaceJSON
	r = tc.mustRun("keyspace", "list")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 || list[0].Name != "default" || list[1].Name != "ks3" || list[1].Consistency != "all" {
		t.Fatalf("keyspace list: %v %+v", err, list)
	}
	tc.mustRun("put", "x", "y", "--keyspace", "ks3")
	if g := getResult(t, tc.mustRun("get", "x", "--keyspace", "ks3")); *g.Value != "y" || g.Receipt.Level != "all" {
		t.Fatalf("get in ks3: %+v", g)
	}
	if r := tc.mustRun("keyspace", "list", "-o", "table"); !strings.Contains(r.stdout, "ks3") || !strings.Contains(r.stdout, "RF") {
		t.Fatalf("keyspace list table: %v", r)
	}

	// Status.
	var st statusJSON
	r = tc.mustRun("status")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Members) != 3 || st.MetadataLeader == "" {
		t.Fatalf("status: %v %v", err, r)
	}
	var own float64
	for _, m := range st.Members {
		if m.State != "alive" || m.RaftRole == "" || m.HintsPending == nil {
			t.Fatalf("status member: %+v", m)
		}
		own += m.RingOwnership
	}
	if own < 0.99 || own > 1.01 {
		t.Fatalf("ring ownership adds up to %v", own)
	}
	if r := tc.mustRun("status", "-o", "table"); !strings.Contains(r.stdout, "metadata leader: n") {
		t.Fatalf("status table: %v", r)
	}
	var doc doctorJSON
	r = tc.mustRun("doctor")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Flagged) != 0 || !doc.Enabled {
		t.Fatalf("doctor on a healthy cluster: %v %v", err, r)
	}
	var cs upJSON
	r = tc.mustRun("cluster", "status")
	if err := json.Unmarshal([]byte(r.stdout), &cs); err != nil || len(cs.Nodes) != 3 || cs.View == nil || !cs.Nodes[1].Running || cs.Nodes[1].State != "alive" {
		t.Fatalf("cluster status: %v %v", err, r)
	}

	// Bad input: each fails with a message naming the problem.
	expectFail(t, tc.run(nil, "put", "", "v"), exitFailure, "key is empty")
	expectFail(t, tc.run(nil, "put", strings.Repeat("k", 4097), "v"), exitFailure, "key is 4097 bytes")
	expectFail(t, tc.run(bytes.NewReader(make([]byte, 1<<20+1)), "put", "big", "-"), exitFailure, "value is 1048577 bytes")
	expectFail(t, tc.run(nil, "get", "x", "--keyspace", "nope"), exitFailure, `keyspace "nope"`)
	expectFail(t, tc.run(nil, "put", "x", "y", "--keyspace", "nope"), exitFailure, "not found")
	expectFail(t, tc.run(nil, "get", "x", "--keyspace", "ks3", "--r", "4"), exitFailure, "R=4")
	expectFail(t, tc.run(nil, "keyspace", "create", "x", "--rf", "5"), exitFailure, "replication factor 5 is larger than the cluster (3 nodes)")
	expectFail(t, tc.run(nil, "keyspace", "create", "ks3", "--rf", "3"), exitFailure, "already exists")
	expectFail(t, tc.run(nil, "keyspace", "create", "x"), exitUsage, "--rf is required")
	expectFail(t, tc.run(nil, "keyspace", "describe", "nope"), exitFailure, "not found")
	expectFail(t, tc.run(nil, "put", "k", "v", "--consistency", "most"), exitUsage, `--consistency "most"`)
	expectFail(t, tc.run(nil, "put", "k", "v", "--consistency", "one", "--w", "2"), exitUsage, "cannot be combined")
	expectFail(t, tc.run(nil, "get"), exitUsage, "accepts 1 arg")
	expectFail(t, tc.run(nil, "get", "k", "--nope"), exitUsage, "unknown flag")
	expectFail(t, tc.run(nil, "frobnicate"), exitUsage, "unknown command")
	expectFail(t, tc.run(nil, "get", "k", "-o", "yaml"), exitUsage, "want table or json")
	expectFail(t, runBin(t, []string{envName("dir") + "=" + tc.dir, envName("timeout") + "=soon"}, nil, "get", "k2"), exitUsage, "ADAPTKV_TIMEOUT")
	expectFail(t, tc.run(nil, "cluster", "kill", "n7"), exitUsage, `no node "n7"`)
	expectFail(t, tc.run(nil, "node", "--data-dir", t.TempDir()), exitUsage, "--id is required")
	expectFail(t, tc.run(nil, "node", "--id", "bad id!", "--in-memory"), exitUsage, "node id")
	expectFail(t, tc.run(nil, "node", "--id", "x"), exitUsage, "data directory is required")
	expectFail(t, tc.run(nil, "node", "--id", "x", "--in-memory", "--gc-percent", "0"), exitUsage, "--gc-percent 0: want 50 to 5000")

	// Down with purge stops every process and removes the folder.
	l := tc.layout()
	r = tc.mustRun("cluster", "down", "--purge")
	for _, n := range l.Nodes {
		if n.running() {
			t.Errorf("%s (pid %d) still runs after cluster down", n.ID, n.PID)
		}
	}
	if _, err := os.Stat(tc.dir); !os.IsNotExist(err) {
		t.Errorf("cluster down --purge left %s: %v", tc.dir, err)
	}
	expectFail(t, tc.run(nil, "cluster", "status"), exitFailure, "no local cluster")
}

// expectFail checks that r failed with status code and a stderr line that
// contains want.
func expectFail(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) || !strings.HasPrefix(r.stderr, "adaptkv: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want exit %d and one stderr line containing %q, got %v", code, want, r)
	}
}

func getResult(t *testing.T, r result) getJSON {
	t.Helper()
	var g getJSON
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatalf("get output is not JSON: %v\n%v", err, r)
	}
	return g
}

func scanResult(t *testing.T, r result) scanJSON {
	t.Helper()
	var s scanJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("scan output is not JSON: %v\n%v", err, r)
	}
	return s
}

func TestApplyEnv(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	eps := fs.StringSlice("endpoints", nil, "")
	dir := fs.String("data-dir", "d", "")
	out := fs.StringP("output", "o", "", "")
	n := fs.Int("nodes", 3, "")
	if err := fs.Parse([]string{"-o", "table"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ADAPTKV_ENDPOINTS": "a:1,b:2", "ADAPTKV_DATA_DIR": "/x", "ADAPTKV_OUTPUT": "json", "ADAPTKV_NODES": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*eps) != "[a:1 b:2]" || *dir != "/x" || *out != "table" || *n != 3 {
		t.Fatalf("endpoints %v, data-dir %q, output %q (the flag must win), nodes %d (empty is unset)", *eps, *dir, *out, *n)
	}
	env["ADAPTKV_NODES"] = "many"
	fs2 := pflag.NewFlagSet("y", pflag.ContinueOnError)
	fs2.Int("nodes", 3, "")
	if err := applyEnv(fs2, lookup); err == nil || !strings.Contains(err.Error(), "ADAPTKV_NODES") {
		t.Fatalf("bad variable: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	unknown := &client.Error{Op: "put", Code: codes.Unavailable, Reason: client.ReasonQuorumNotReached, Message: "1 of 2 acknowledged", Unknown: true}
	if c := exitCode(unknown, true); c != exitUnknown {
		t.Errorf("unknown outcome: exit %d", c)
	}
	if msg := describe(fmt.Errorf("wrapped: %w", unknown)); !strings.Contains(msg, "may or may not have been applied") {
		t.Errorf("unknown outcome message: %s", msg)
	}
	definite := &client.Error{Op: "put", Code: codes.InvalidArgument, Message: "key is empty"}
	if c := exitCode(definite, true); c != exitFailure {
		t.Errorf("invalid argument: exit %d", c)
	}
	if c := exitCode(usagef("bad"), true); c != exitUsage {
		t.Errorf("usage: exit %d", c)
	}
	if c := exitCode(fmt.Errorf("unknown command"), false); c != exitUsage {
		t.Errorf("error before the command ran: exit %d", c)
	}
	if c := exitCode(notFound("default", []byte("k"), "x"), true); c != exitFailure {
		t.Errorf("not found: exit %d", c)
	}
}

// TestPickBasePort: a new local cluster's layout (cluster.json) is node/launch's,
// from a free block below the ephemeral range (the command line's checks
// are launch's TestLayout).
func TestPickBasePort(t *testing.T) {
	l, lc, err := newLayout("/d", "127.0.0.1", 3, 0, false, false)
	if err != nil {
		t.Fatal(err)
	}
	base := l.BasePort
	if base < 10000 || base+30 > launch.EphemeralLow() && launch.EphemeralLow() > 10100 {
		t.Fatalf("base port %d outside [10000, %d)", base, launch.EphemeralLow())
	}
	if got, want := l.Nodes[2].HTTPAddr, fmt.Sprintf("127.0.0.1:%d", base+23); got != want {
		t.Fatalf("n3 http address %s, want %s", got, want)
	}
	if args := strings.Join(lc.Args(lc.Node("n1")), " "); !strings.Contains(args, fmt.Sprintf("--seeds 127.0.0.1:%d,127.0.0.1:%d", base+11, base+21)) ||
		!strings.Contains(args, "--bootstrap-expect 3") || !strings.Contains(args, "--in-memory=false") {
		t.Fatalf("n1 args: %s", args)
	}
	if l.Nodes[1].DataDir != "/d/n2" || l.Nodes[1].LogFile != "/d/n2/node.log" || l.Nodes[1].pidFile() != "/d/n2/pid" {
		t.Fatalf("n2 layout %+v", l.Nodes[1])
	}
	if _, err := l.launcher(); err != nil {
		t.Fatalf("the recorded layout does not match the launcher's: %v", err)
	}
}
