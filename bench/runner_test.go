package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The operation mix of every core workload is YCSB's.
// Reference: YCSB workloads/workloada … workloadf.
func TestOpMixPerWorkload(t *testing.T) {
	want := map[string]map[Op]float64{
		"a": {OpRead: 0.5, OpUpdate: 0.5},
		"b": {OpRead: 0.95, OpUpdate: 0.05},
		"c": {OpRead: 1},
		"d": {OpRead: 0.95, OpInsert: 0.05},
		"e": {OpScan: 0.95, OpInsert: 0.05},
		"f": {OpRead: 0.5, OpReadModifyWrite: 0.5},
	}
	wantDist := map[string]Distribution{"a": Zipfian, "b": Zipfian, "c": Zipfian, "d": Latest, "e": Zipfian, "f": Zipfian}
	const samples = 200_000
	for name, mix := range want {
		w, err := ParseWorkload(strings.ToUpper(name))
		if err != nil {
			t.Fatal(err)
		}
		if w.Distribution != wantDist[name] {
			t.Errorf("workload %s: distribution %s; want %s", name, w.Distribution, wantDist[name])
		}
		c, err := NewOpChooser(w)
		if err != nil {
			t.Fatal(err)
		}
		r := newRand()
		counts := map[Op]int{}
		for range samples {
			counts[c.Next(r)]++
		}
		for o := range numOps {
			got := float64(counts[o]) / samples
			if math.Abs(got-mix[o]) > 0.005 {
				t.Errorf("workload %s: %s is %.4f of operations; want %.2f", name, o, got, mix[o])
			}
		}
	}
	if _, err := ParseWorkload("g"); err == nil {
		t.Error("ParseWorkload(g) succeeded; want an error")
	}
	if _, err := NewOpChooser(Workload{Name: "empty"}); err == nil {
		t.Error("NewOpChooser of an empty workload succeeded; want an error")
	}
}

// memStore is an in-memory Store that counts calls and can fail chosen keys.
type memStore struct {
	mu      sync.Mutex
	data    map[string][]byte
	calls   map[string]int
	scanLen []int
	fail    func(op, key string) error
	delay   time.Duration
}

func newMemStore() *memStore {
	return &memStore{data: map[string][]byte{}, calls: map[string]int{}}
}

func (m *memStore) op(op, key string) error {
	if m.delay > 0 {
		time.Sleep(m.delay)
	}
	m.mu.Lock()
	m.calls[op]++
	m.mu.Unlock()
	if m.fail != nil {
		return m.fail(op, key)
	}
	return nil
}

func (m *memStore) Read(_ context.Context, key string) error {
	if err := m.op("read", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[key]; !ok {
		return ErrNotFound
	}
	return nil
}

func (m *memStore) write(op, key string, value []byte) error {
	if err := m.op(op, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[key] = bytes.Clone(value)
	return nil
}

func (m *memStore) Update(_ context.Context, key string, value []byte) error {
	return m.write("update", key, value)
}

func (m *memStore) Insert(_ context.Context, key string, value []byte) error {
	return m.write("insert", key, value)
}

func (m *memStore) Scan(_ context.Context, start string, n int) error {
	if err := m.op("scan", start); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scanLen = append(m.scanLen, n)
	return nil
}

func (m *memStore) Close() error { return nil }

func loadMem(t *testing.T, records int64) *memStore {
	t.Helper()
	m := newMemStore()
	var progress sync.Map
	res, err := Load(context.Background(), m, Config{Records: records, Concurrency: 4, ValueSize: 16,
		OnProgress: func(n int64) { progress.Store(n, true) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != records || res.Errors != 0 || len(m.data) != int(records) {
		t.Fatalf("load: %d ops, %d errors, %d keys stored; want %d, 0, %d", res.Ops, res.Errors, len(m.data), records, records)
	}
	if _, ok := progress.Load(records); !ok {
		t.Errorf("load progress never reached %d", records)
	}
	for _, v := range m.data {
		if len(v) != 16 {
			t.Fatalf("value of %d bytes; want 16", len(v))
		}
		break
	}
	return m
}

func TestRunCountsOperationsPerWorkload(t *testing.T) {
	const records, ops = 1000, 20_000
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		t.Run(name, func(t *testing.T) {
			m := loadMem(t, records)
			w := Workloads[name]
			res, err := Run(context.Background(), m, Config{Workload: w, Records: records, Concurrency: 8, Operations: ops, ValueSize: 16})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops != ops || res.Errors != 0 {
				t.Fatalf("ops = %d, errors = %d (%v); want %d, 0", res.Ops, res.Errors, res.ErrorKinds, ops)
			}
			var sum int64
			for _, name := range OpNames(res) {
				o := res.Operations[name]
				sum += o.Ops
				if o.Latency.Count != o.Ops || o.Latency.Max < o.Latency.P50 {
					t.Errorf("%s: latency %+v does not match %d ops", name, o.Latency, o.Ops)
				}
			}
			if sum != res.Ops {
				t.Errorf("per-operation ops sum to %d; want %d", sum, res.Ops)
			}
			// Each workload's operations reached the store: an rmw is a
			// read plus an update; an insert adds a key.
			m.mu.Lock()
			defer m.mu.Unlock()
			switch name {
			case "c":
				if m.calls["update"] != 0 || m.calls["read"] == 0 {
					t.Errorf("workload c calls %v; want reads only", m.calls)
				}
			case "d", "e":
				if inserted := len(m.data) - records; inserted != m.calls["insert"]-records || inserted == 0 {
					t.Errorf("workload %s: %d new keys after %d inserts", name, inserted, m.calls["insert"]-records)
				}
			case "f":
				rmw := res.Operations["rmw"].Ops
				if int64(m.calls["update"]) != rmw {
					t.Errorf("workload f: %d updates for %d read-modify-writes", m.calls["update"], rmw)
				}
				if int64(m.calls["read"]) != res.Operations["read"].Ops+rmw {
					t.Errorf("workload f: %d reads; want %d reads + %d rmw", m.calls["read"], res.Operations["read"].Ops, rmw)
				}
			}
			if name == "e" {
				for _, n := range m.scanLen {
					if n < 1 || n > DefaultMaxScanLength {
						t.Fatalf("scan of %d keys; want 1 to %d", n, DefaultMaxScanLength)
					}
				}
			}
		})
	}
}

func TestRunCountsErrorsByKind(t *testing.T) {
	const records = 500
	m := loadMem(t, records)
	m.fail = func(op, key string) error {
		switch {
		case op == "update" && strings.HasSuffix(key, "1"):
			return status.Error(codes.Unavailable, "replica down")
		case op == "read" && strings.HasSuffix(key, "2"):
			return &KindError{Kind: "unavailable/quorum_not_reached", Err: errors.New("2 of 3")}
		case op == "read" && strings.HasSuffix(key, "3"):
			return context.DeadlineExceeded
		}
		return nil
	}
	res, err := Run(context.Background(), m, Config{Workload: Workloads["a"], Distribution: Uniform, Records: records, Concurrency: 4, Operations: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops+res.Errors != 10_000 {
		t.Errorf("ops + errors = %d; want 10000", res.Ops+res.Errors)
	}
	for kind, op := range map[string]string{"unavailable": "update", "unavailable/quorum_not_reached": "read", "timeout": "read"} {
		if res.ErrorKinds[kind] == 0 || res.Operations[op].ErrorKinds[kind] == 0 {
			t.Errorf("no %q errors counted for %s: %v", kind, op, res.ErrorKinds)
		}
	}
	var sum int64
	for _, n := range res.ErrorKinds {
		sum += n
	}
	if sum != res.Errors {
		t.Errorf("error kinds sum to %d; want %d", sum, res.Errors)
	}
}

func TestRunDurationTimelineAndWarmup(t *testing.T) {
	m := loadMem(t, 100)
	m.delay = 200 * time.Microsecond
	var ticks []Point
	res, err := Run(context.Background(), m, Config{
		Workload: Workloads["b"], Records: 100, Concurrency: 4,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Tick: 100 * time.Millisecond,
		OnTick: func(p Point) { ticks = append(ticks, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed < 0.5 || res.Elapsed > 1.5 {
		t.Errorf("elapsed %.3f s; want about 0.5 (warmup excluded)", res.Elapsed)
	}
	if len(res.Timeline) < 4 || len(ticks) != len(res.Timeline) {
		t.Fatalf("%d timeline points, %d ticks; want about 5 of each", len(res.Timeline), len(ticks))
	}
	var sum int64
	for i, p := range res.Timeline {
		sum += p.Ops
		if i > 0 && p.Elapsed <= res.Timeline[i-1].Elapsed {
			t.Errorf("timeline not increasing at %d: %v", i, res.Timeline)
		}
	}
	if sum != res.Ops {
		t.Errorf("timeline ops sum to %d; want the run's %d", sum, res.Ops)
	}
	// The deadline falls on a tick here; the sliver between them must not
	// show as a throughput spike.
	for _, p := range res.Timeline {
		if p.Throughput > 3*res.Throughput {
			t.Errorf("timeline point %+v: %.0f ops/s against the run's %.0f", p, p.Throughput, res.Throughput)
		}
	}
	if m.calls["read"]+m.calls["update"] <= int(res.Ops) {
		t.Errorf("store saw %d operations, the result %d; want the warmup's on top", m.calls["read"]+m.calls["update"], res.Ops)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	m := loadMem(t, 100)
	m.delay = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, m, Config{Workload: Workloads["c"], Records: 100, Concurrency: 4, Duration: time.Hour})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run err = %v; want deadline exceeded", err)
	}
	if res == nil || res.Ops == 0 {
		t.Fatalf("partial result %+v; want the operations done before the cancel", res)
	}
}

func TestSummarizePercentiles(t *testing.T) {
	h := newHist()
	for us := int64(1); us <= 1000; us++ {
		recordLatency(h, time.Duration(us)*time.Microsecond)
	}
	got := Summarize(h)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", got.P50, 0.5}, {"p90", got.P90, 0.9}, {"p99", got.P99, 0.99},
		{"p99.9", got.P999, 0.999}, {"max", got.Max, 1.0}, {"mean", got.Mean, 0.5005},
	} {
		if math.Abs(c.got-c.want) > 0.002 {
			t.Errorf("%s = %.4f ms; want %.4f", c.name, c.got, c.want)
		}
	}
	if got.Count != 1000 {
		t.Errorf("count = %d; want 1000", got.Count)
	}
	if z := Summarize(newHist()); z != (Latency{}) {
		t.Errorf("Summarize(empty) = %+v; want zeros", z)
	}
	// Out-of-range values are clamped, not dropped.
	recordLatency(h, 10*time.Minute)
	recordLatency(h, 0)
	if got := Summarize(h); got.Count != 1002 || got.Max < 59_000 {
		t.Errorf("after out-of-range samples: count %d, max %.0f ms; want 1002 and ≈ 60000", got.Count, got.Max)
	}
}

func TestErrorKind(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrNotFound, "not_found"},
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
		{status.Error(codes.DeadlineExceeded, "x"), "deadline_exceeded"},
		{status.Error(codes.ResourceExhausted, "x"), "resource_exhausted"},
		{&KindError{Kind: "unavailable/quorum_not_reached", Err: errors.New("x")}, "unavailable/quorum_not_reached"},
		{errors.New("boom"), "other"},
	} {
		if got := ErrorKind(tt.err); got != tt.want {
			t.Errorf("ErrorKind(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}

// The JSON report keeps the field names scripts rely on; a change here is a
// change of ReportSchema.
func TestReportJSONSchema(t *testing.T) {
	m := loadMem(t, 200)
	res, err := Run(context.Background(), m, Config{Workload: Workloads["a"], Records: 200, Concurrency: 2, Operations: 2000, Tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Schema: ReportSchema, Store: "adaptkv", Target: Target{Endpoints: []string{"127.0.0.1:7400"}},
		Settings: Settings{Workload: "a", Distribution: Zipfian, Records: 200, Consistency: "one"}, Host: ThisHost(), Run: res, Load: res}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	paths := []string{
		"schema", "store", "target.endpoints", "settings.workload", "settings.distribution", "settings.records",
		"settings.value_size", "settings.concurrency", "settings.consistency", "settings.rf", "settings.seed",
		"host.go_version", "host.num_cpu",
		"load.ops", "run.phase", "run.duration_s", "run.ops", "run.ops_per_sec", "run.errors",
		"run.latency.p50_ms", "run.latency.p90_ms", "run.latency.p99_ms", "run.latency.p999_ms", "run.latency.max_ms", "run.latency.mean_ms",
		"run.operations.read.ops", "run.operations.read.errors", "run.operations.read.latency.p99_ms", "run.operations.update.latency.p999_ms",
	}
	for _, p := range paths {
		if _, ok := lookup(doc, p); !ok {
			t.Errorf("JSON report has no %s:\n%s", p, buf.String())
		}
	}
	if doc["schema"] != ReportSchema {
		t.Errorf("schema = %v; want %s", doc["schema"], ReportSchema)
	}
	tl, _ := lookup(doc, "run.timeline")
	points, _ := tl.([]any)
	if len(points) == 0 {
		t.Fatal("run.timeline is empty")
	}
	first := points[0].(map[string]any)
	for _, k := range []string{"t_s", "ops", "ops_per_sec", "p50_ms", "p99_ms", "errors"} {
		if _, ok := first[k]; !ok {
			t.Errorf("timeline point has no %s: %v", k, first)
		}
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"p99.9 ms", "read", "update", "total"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func TestProgressQuietWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, 100, "load")
	for range 100 {
		p.Add(1)
	}
	p.Finish()
	if p.Visible() || buf.Len() != 0 {
		t.Errorf("progress wrote %q to a buffer; want nothing", buf.String())
	}
	// A regular file is not a terminal either.
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p = NewProgress(f, 100, "load")
	p.Add(100)
	p.Finish()
	if st, _ := f.Stat(); p.Visible() || st.Size() != 0 {
		t.Errorf("progress wrote %d bytes to a file; want none", st.Size())
	}
	var nilP *Progress
	nilP.Add(1) // must not panic
	nilP.Finish()
}

func TestWritePlot(t *testing.T) {
	res := &Result{Timeline: []Point{{Elapsed: 1, Throughput: 100, P50: 1, P99: 3}, {Elapsed: 2, Throughput: 120, P50: 1.1, P99: 2.5}}}
	path := filepath.Join(t.TempDir(), "run.png")
	if err := WritePlot(path, "test", res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("%s is not a PNG", path)
	}
	if err := WritePlot(path, "empty", &Result{}); err == nil {
		t.Error("WritePlot of an empty timeline succeeded; want an error")
	}
}

func TestOpNamesOrder(t *testing.T) {
	res := &Result{Operations: map[string]*OpResult{"rmw": {}, "read": {}, "scan": {}}}
	got := OpNames(res)
	if !sort.SliceIsSorted(got, func(i, j int) bool { return opIndex(got[i]) < opIndex(got[j]) }) || len(got) != 3 {
		t.Errorf("OpNames = %v; want read, scan, rmw", got)
	}
}

func opIndex(name string) int {
	for i, n := range opNames {
		if n == name {
			return i
		}
	}
	return -1
}

// BenchmarkRunGenerator measures the generator's own cost per operation
// (choosing the op and key, naming the key, filling the value, recording
// the latency) against a store that does nothing.
func BenchmarkRunGenerator(b *testing.B) {
	for _, name := range []string{"a", "d", "e"} {
		b.Run(name, func(b *testing.B) {
			s := nopStore{}
			cfg := Config{Workload: Workloads[name], Records: 100_000, Concurrency: 1, Operations: int64(b.N)}
			b.ResetTimer()
			if _, err := Run(context.Background(), s, cfg); err != nil {
				b.Fatal(err)
			}
		})
	}
}

type nopStore struct{}

func (nopStore) Read(context.Context, string) error           { return nil }
func (nopStore) Update(context.Context, string, []byte) error { return nil }
func (nopStore) Insert(context.Context, string, []byte) error { return nil }
func (nopStore) Scan(context.Context, string, int) error      { return nil }
func (nopStore) Close() error                                 { return nil }
