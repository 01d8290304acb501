package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/bench"
)

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
	for _, want := range []string{"| A | adaptkv | one | 40000 |", "| A | one | etcd (linearizable) | 4.00× | 0.33× | 0.40× | n/a |", "**no**"} {
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
