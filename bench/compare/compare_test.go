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

	"github.com/google/pprof/profile"

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

func TestParseSweep(t *testing.T) {
	tests := []struct {
		in      string
		want    sweepSpec
		wantErr bool
	}{
		{in: "", want: sweepSpec{}},
		{in: "clients=1,8,32", want: sweepSpec{dim: sweepClients, values: []int64{1, 8, 32}}},
		{in: "concurrency=4", want: sweepSpec{dim: sweepClients, values: []int64{4}}},
		{in: "value-size=128, 1024,16384", want: sweepSpec{dim: sweepValueSize, values: []int64{128, 1024, 16384}}},
		{in: "records=100_000,10000000", want: sweepSpec{dim: sweepRecords, values: []int64{100_000, 10_000_000}}},
		{in: "clients", wantErr: true},
		{in: "threads=1,2", wantErr: true},
		{in: "clients=1,x", wantErr: true},
		{in: "clients=0", wantErr: true},
		{in: "clients=8,8", wantErr: true},
		{in: "records=", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSweep(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("parseSweep(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := parseFlags([]string{"--plot", "x.png"}); err == nil {
		t.Error("--plot without --sweep accepted")
	}
}

// sweepPhase is a measured phase at a number of clients, with CPU split
// between servers and client.
func sweepPhase(system, setting string, clients int, tput, p99, servers, client float64) phase {
	r := result(tput, p99/2, p99)
	r.Concurrency, r.Records, r.ValueSize = clients, 1000, 128
	return phase{System: system, Setting: setting, Workload: "a", Result: r, Point: fmt.Sprintf("clients=%d", clients),
		CPU: &CPUUse{Ours: servers + client, Servers: servers, Client: client}}
}

func TestSweepReportAndPlot(t *testing.T) {
	sw := sweepSpec{dim: sweepClients, values: []int64{1, 8}}
	c := &comparison{o: &options{sweep: sw, tls: []bool{false}, systems: []string{sysAdaptkv, sysEtcd}}}
	c.results = results{
		sweepPhase(sysAdaptkv, setOne, 1, 1000, 2, 0.5, 0.1),
		sweepPhase(sysEtcd, setLinearizable, 1, 500, 4, 0.6, 0.1),
		sweepPhase(sysAdaptkv, setOne, 8, 4000, 4, 1.2, 0.4),
		sweepPhase(sysEtcd, setLinearizable, 8, 1000, 10, 1.4, 0.2),
	}
	var md bytes.Buffer
	c.writeSweepReport(&md, time.Second)
	for _, want := range []string{
		// The adaptkv line, in the order of the swept values, with CPU
		// per operation of servers (1.2 CPUs / 4000 ops/s = 300 µs) and
		// client (100 µs) apart.
		"| adaptkv | one | A | 1 | 1000 | 1.00 | 2.00 | 0 | 500 | 100 | 0.00 |\n| adaptkv | one | A | 8 | 4000 | 2.00 | 4.00 | 0 | 300 | 100 | 0.00 |",
		"| 8 | A | one | etcd (linearizable) | 4.00× | 0.40× |",
		"| A | adaptkv | one | off | clients=8 | 4000 | 300 | 100 | 400 | n/a |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("sweep report lacks %q:\n%s", want, md.String())
		}
	}
	path := filepath.Join(t.TempDir(), "sweep.png")
	if err := c.results.writeSweepPlot(path, sw); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("plot is not a PNG (%v)", err)
	}
}

// TestProfileBuckets writes a CPU profile with known stacks, reads it back
// through pprof's parser and checks where each sample lands.
func TestProfileBuckets(t *testing.T) {
	fns := map[string]*profile.Function{}
	loc := func(name string) *profile.Location {
		f := fns[name]
		if f == nil {
			f = &profile.Function{ID: uint64(len(fns) + 1), Name: name}
			fns[name] = f
		}
		return &profile.Location{Line: []profile.Line{{Function: f}}}
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
	}
	stacks := []struct {
		frames []string // innermost first
		cpu    int64
		bucket string
	}{
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.Fdatasync", "github.com/cockroachdb/pebble/vfs.(*syncingFile).Sync", "github.com/adaptkv/adaptkv/storage.(*Pebble).commit"}, 30, bucketFsync},
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, 20, bucketRuntime},
		{[]string{"runtime.mallocgc", "google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshalPointer", "google.golang.org/grpc.(*Server).processUnaryRPC"}, 15, bucketProto},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.write", "internal/poll.(*FD).Write", "net.(*conn).Write", "golang.org/x/net/http2.(*Framer).WriteData"}, 10, bucketSyscalls},
		{[]string{"crypto/internal/fips140/aes/gcm.gcmAesEnc", "crypto/tls.(*Conn).Write", "google.golang.org/grpc/internal/transport.(*loopyWriter).run"}, 10, bucketTLS},
		{[]string{"google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders"}, 5, bucketHTTP2},
		{[]string{"runtime.newobject", "github.com/adaptkv/adaptkv/replication.(*Coordinator).Put"}, 5, bucketLogic},
		{[]string{"google.golang.org/grpc.(*ClientConn).Invoke"}, 3, bucketGRPCClient},
		{[]string{"google.golang.org/grpc.(*Server).handleStream"}, 2, bucketGRPCServer},
	}
	for _, s := range stacks {
		var locs []*profile.Location
		for _, f := range s.frames {
			locs = append(locs, loc(f))
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{1, s.cpu}})
	}
	for i, l := range locationsOf(p) {
		l.ID = uint64(i + 1)
		p.Location = append(p.Location, l)
	}
	for _, f := range fns {
		p.Function = append(p.Function, f)
	}
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := readBreakdown(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.total != 100 {
		t.Fatalf("total = %d; want 100 (the cpu values)", b.total)
	}
	for _, s := range stacks {
		if got := b.buckets[s.bucket]; got != s.cpu {
			t.Errorf("bucket %q = %d; want %d (stack %v)", s.bucket, got, s.cpu, s.frames)
		}
	}
	if got := b.topFuncs(bucketFsync, 3); got != "`linux.Syscall6` 30.0%" {
		t.Errorf("topFuncs(fsync) = %q", got)
	}
}

// locationsOf lists p's samples' locations once each, in order.
func locationsOf(p *profile.Profile) []*profile.Location {
	seen := map[*profile.Location]bool{}
	var out []*profile.Location
	for _, s := range p.Sample {
		for _, l := range s.Location {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// TestRunSweepBulk runs a short clients sweep on real etcd and adaptkv
// clusters, each loaded through its bulk path: every point in the table,
// the plot written, no failed operation.
func TestRunSweepBulk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	dir := t.TempDir()
	plotPath := filepath.Join(dir, "sweep.png")
	var stdout bytes.Buffer
	err := run([]string{
		"--systems", "etcd,adaptkv", "--tls", "off", "--workloads", "a", "--levels", "one",
		"--etcd-serializable=false", "--records", "300", "--sweep", "clients=1,4", "--bulk-load",
		"--duration", "400ms", "--warmup", "100ms", "--quiet-wait", "0", "--retry-noisy", "0",
		"--adaptkv-mode", modeReexec, "--workdir", filepath.Join(dir, "work"), "--plot", plotPath,
	}, &stdout)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	md := stdout.String()
	for _, want := range []string{
		"| adaptkv | one | A | 1 |", "| adaptkv | one | A | 4 |",
		"| etcd | linearizable | A | 1 |", "| etcd | linearizable | A | 4 |",
		"[bulk: 48 workers × 16]", "[bulk: 16 workers × 128]", "CPU budget per operation",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "failed") {
		t.Errorf("report has failures:\n%s", md)
	}
	if fi, err := os.Stat(plotPath); err != nil || fi.Size() == 0 {
		t.Errorf("no plot written (%v)", err)
	}
}

func TestEtcdBatchSizeFitsRequestLimit(t *testing.T) {
	for _, vs := range []int{1, 128, 1024, 16384, 1 << 20, 4 << 20} {
		n := etcdBatchSize(vs)
		if n < 1 || n > etcdTxnOps || (n > 1 && n*vs > etcdTxnBytes) {
			t.Errorf("etcdBatchSize(%d) = %d; want 1..%d puts within %d bytes", vs, n, etcdTxnOps, etcdTxnBytes)
		}
	}
	if etcdBatchSize(128) != etcdTxnOps {
		t.Errorf("etcdBatchSize(128) = %d; want the full %d", etcdBatchSize(128), etcdTxnOps)
	}
}
