package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/bench"
)

// TestMain lets the test binary be its own children (etcd members, adaptkv
// nodes in reexec mode), as the command is.
func TestMain(m *testing.M) {
	runChild()
	os.Exit(m.Run())
}

func TestEchoStoreRoundTrip(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- serveEcho(ctx, lis, 128) }()
	s, err := newEchoStore(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Read(ctx, bench.KeyName(1)); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := s.Update(ctx, bench.KeyName(1), make([]byte, 128)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	res, err := bench.Run(ctx, s, bench.Config{Workload: bench.Workloads["c"], Records: 100, Concurrency: 4, Operations: 500})
	if err != nil || res.Ops != 500 || res.Errors != 0 {
		t.Fatalf("Run = %+v, %v; want 500 ops without errors", res, err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("serveEcho: %v", err)
	}
}

func result(tput, p50, p99 float64) *bench.Result {
	return &bench.Result{Throughput: tput, Latency: bench.Latency{P50: p50, P99: p99}}
}

func TestRatiosAgainstTargets(t *testing.T) {
	rs := results{
		{System: sysAdaptkv, Setting: setOne, Workload: "a", Result: result(40_000, 1, 2)},
		{System: sysAdaptkv, Setting: setQuorum, Workload: "a", Result: result(20_000, 2, 4)},
		{System: sysEtcd, Setting: setLinearizable, Workload: "a", Result: result(10_000, 3, 5)},
		{System: sysRedis, Setting: setAOFAlways, Workload: "a", Result: result(100_000, 0.5, 1)},
	}
	got := map[string]ratio{}
	for _, r := range rs.ratios() {
		got[r.level+" vs "+r.base] = r
	}
	one := got["one vs etcd (linearizable)"]
	if one.throughput != 4 || one.p99 != 0.4 || one.met != "yes" {
		t.Errorf("one vs etcd = %+v; want 4×, p99 0.4×, met", one)
	}
	q := got["quorum vs etcd (linearizable)"]
	if q.throughput != 2 || q.met == "yes" {
		t.Errorf("quorum vs etcd = %+v; want 2× and not met (goal 2.5×)", q)
	}
	if r := got["one vs redis (aof always)"]; r.throughput != 0.4 || r.met == "yes" {
		t.Errorf("one vs redis = %+v; want 0.4× and not met", r)
	}
	if _, ok := got["one vs grpc-echo (bare unary)"]; ok {
		t.Error("ratio against echo reported without an echo phase")
	}
	var md bytes.Buffer
	rs.writeMarkdown(&md)
	for _, want := range []string{"| A | adaptkv | one | off | 40000 |", "| A | off | one | etcd (linearizable) | 4.00× | 0.33× | 0.40× | n/a |", "**no**"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestCPUSampleCountsThisProcess(t *testing.T) {
	a := sampleCPU()
	if !a.ok {
		t.Skip("no /proc here")
	}
	// Burn CPU for long enough that /proc's 10 ms ticks see it in both the
	// machine's and the process's counters.
	x := 0
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		for i := range 100_000 {
			x += i
		}
	}
	_ = x
	u := cpuBetween(a, sampleCPU())
	if u == nil || u.Ours <= 0 || u.Machine < u.Ours*0.5 || u.NumCPU < 1 {
		t.Errorf("cpuBetween = %+v; want our share positive and within the machine's", u)
	}
}

func TestParseTLS(t *testing.T) {
	tests := []struct {
		in      string
		want    []bool
		wantErr bool
	}{
		{in: "on", want: []bool{true}},
		{in: "off", want: []bool{false}},
		{in: "both", want: []bool{true, false}},
		{in: "BOTH", want: []bool{true, false}},
		{in: "off,on", want: []bool{false, true}},
		{in: "on, off", want: []bool{true, false}},
		{in: "", wantErr: true},
		{in: "yes", wantErr: true},
		{in: "on,on", wantErr: true},
		{in: "on,both", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseTLS(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("parseTLS(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTLSFlags(t *testing.T) {
	tests := []struct {
		args    []string
		want    []bool
		wantErr bool
	}{
		{args: nil, want: []bool{true}},
		{args: []string{"--tls", "both"}, want: []bool{true, false}},
		{args: []string{"--adaptkv-insecure"}, want: []bool{false}},
		{args: []string{"--adaptkv-insecure", "--tls", "off"}, want: []bool{false}},
		{args: []string{"--adaptkv-insecure", "--tls", "both"}, wantErr: true},
		{args: []string{"--tls", "maybe"}, wantErr: true},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(o.tls, tt.want)) {
			var got []bool
			if o != nil {
				got = o.tls
			}
			t.Errorf("parseFlags(%q) = %v, %v; want %v (error %v)", tt.args, got, err, tt.want, tt.wantErr)
		}
	}
}

func withCPU(p phase, cpus float64) phase {
	p.CPU = &CPUUse{Ours: cpus}
	return p
}

func TestTLSCostAndVerdict(t *testing.T) {
	rs := results{
		withCPU(phase{System: sysAdaptkv, Setting: setQuorum, Workload: "a", TLS: true, Result: result(9_000, 2, 11)}, 1.8),
		withCPU(phase{System: sysAdaptkv, Setting: setQuorum, Workload: "a", Result: result(10_000, 2, 10)}, 1.8),
		withCPU(phase{System: sysEtcd, Setting: setLinearizable, Workload: "a", TLS: true, Result: result(3_000, 6, 30)}, 1.8),
		withCPU(phase{System: sysEtcd, Setting: setLinearizable, Workload: "a", Result: result(4_000, 5, 20)}, 1.8),
		// Only one sitting of B: no cost of TLS for it.
		{System: sysAdaptkv, Setting: setQuorum, Workload: "b", TLS: true, Result: result(9_000, 2, 11)},
		{System: sysEtcd, Setting: setLinearizable, Workload: "b", TLS: true, Result: result(3_000, 6, 30)},
	}
	costs := rs.tlsCosts()
	if len(costs) != 2 {
		t.Fatalf("tlsCosts = %+v; want adaptkv and etcd at A", costs)
	}
	ours := costs[0]
	if ours.system != sysAdaptkv || ours.throughput != 0.9 || ours.p99 != 1.1 || ours.cpuAdded < 19.9 || ours.cpuAdded > 20.1 {
		t.Errorf("adaptkv's cost = %+v; want throughput 0.9×, p99 1.1×, 20 µs per op added", ours)
	}
	vs := rs.tlsVerdicts()
	if len(vs) != 1 || !vs[0].noLarger || vs[0].theirs.throughput != 0.75 || vs[0].theirs.p99 != 1.5 {
		t.Fatalf("tlsVerdicts = %+v; want one verdict at A, ours no larger (0.9× against 0.75×)", vs)
	}
	// Worse p99 alone is a larger loss.
	rs[0].Result = result(9_000, 2, 16)
	if vs := rs.tlsVerdicts(); vs[0].noLarger {
		t.Errorf("p99 ×1.6 against etcd's ×1.5 judged no larger: %+v", vs[0])
	}
	// The ratios to etcd pair the sittings: adaptkv with TLS against etcd
	// with TLS.
	got := map[string]float64{}
	for _, r := range rs.ratios() {
		got[fmt.Sprintf("%s %s %s", r.workload, tlsName(r.tls), r.base)] = r.throughput
	}
	if got["A on etcd (linearizable)"] != 3 || got["A off etcd (linearizable)"] != 2.5 || got["B on etcd (linearizable)"] != 3 {
		t.Errorf("ratios = %v; want A on 3×, A off 2.5×, B on 3×", got)
	}
	var md bytes.Buffer
	rs.writeMarkdown(&md)
	for _, want := range []string{
		"| A | adaptkv | quorum | 10000 → 9000 | 0.90× | 2.00 → 2.00 | 10.00 → 16.00 | 1.60× | 180 → 200 (+20) |",
		"| A | quorum | linearizable | 0.90× | 0.75× | 1.60× | 1.50× | **no** |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

// TestRunTLSBoth runs the whole comparison, briefly, on adaptkv and etcd
// with and without TLS: four real 3-node clusters over loopback, their
// phases paired in the cost-of-TLS tables, and no failed operation.
func TestRunTLSBoth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four clusters")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "report.md")
	var stdout bytes.Buffer
	err := run([]string{
		"--systems", "etcd,adaptkv", "--tls", "off,on", "--workloads", "b", "--levels", "quorum",
		"--etcd-serializable=false", "--records", "200", "--concurrency", "4",
		"--duration", "500ms", "--warmup", "100ms", "--quiet-wait", "0", "--retry-noisy", "0",
		"--adaptkv-mode", modeReexec, "--workdir", filepath.Join(dir, "work"), "--out", out,
	}, &stdout)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	md := stdout.String()
	for _, want := range []string{
		"| B | etcd | linearizable | off |", "| B | etcd | linearizable | on |",
		"| B | adaptkv | quorum | off |", "| B | adaptkv | quorum | on |",
		"Cost of TLS", "| B | quorum | linearizable |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "failed") || strings.Contains(md, "errors (") {
		t.Errorf("report has failures:\n%s", md)
	}
	for _, line := range strings.Split(md, "\n") {
		if f := strings.Split(line, "|"); len(f) == 13 && strings.TrimSpace(f[5]) != "ops/s" && strings.HasPrefix(strings.TrimSpace(f[5]), "0") {
			t.Errorf("phase without operations: %s", line)
		}
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, stdout.Bytes()) {
		t.Errorf("--out file differs from the printed report (%v)", err)
	}
}

func TestEtcdTLSRefusesPlaintext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := startEtcd(ctx, self, t.TempDir(), 3, etcdOptions{secure: true, grpcOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.stop()
	if cl.tls == nil || !strings.HasPrefix(cl.endpoints[0], "https://") {
		t.Fatalf("secure cluster with endpoints %v and TLS %v", cl.endpoints, cl.tls)
	}
	s, err := newEtcdStore(cl.endpoints, cl.tls, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if err := s.Read(ctx, "k"); err != nil {
		t.Fatalf("get over TLS: %v", err)
	}
	// A client without a certificate is refused: etcd runs with
	// --client-cert-auth.
	noCert := cl.tls.Clone()
	noCert.GetClientCertificate = nil
	bare, err := newEtcdStore(cl.endpoints, noCert, false)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	short, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	if err := bare.Read(short, "k"); err == nil || errors.Is(err, bench.ErrNotFound) {
		t.Errorf("get without a client certificate = %v; want refused", err)
	}
}
