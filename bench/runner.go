package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Defaults of Config, chosen to match the recorded comparison.
const (
	DefaultRecords       = 100_000
	DefaultValueSize     = 128
	DefaultConcurrency   = 32
	DefaultDuration      = 30 * time.Second
	DefaultTick          = time.Second
	DefaultMaxScanLength = 100
)

// Config describes one load or run phase.
type Config struct {
	// Workload is the operation mix; see Workloads.
	Workload Workload
	// Distribution overrides the workload's request distribution when set.
	Distribution Distribution
	// Records is the number of records the load phase inserts and the
	// run phase chooses from. Default 100,000.
	Records int64
	// ValueSize is the size of every written value in bytes. Default 128.
	ValueSize int
	// Concurrency is the number of workers, each with one request in
	// flight (a closed loop, as YCSB's threads). Default 32.
	Concurrency int
	// Duration bounds the measured part of the run. Operations, when set,
	// bounds it by count instead; when both are set the first reached
	// ends the run. Default 30 s when neither is set. Load ignores both.
	Duration   time.Duration
	Operations int64
	// Warmup runs the workload unmeasured for this long before the
	// measured part, so that connections, caches and the hot keys are warm.
	Warmup time.Duration
	// Seed seeds every worker's random source (worker i uses PCG(Seed,
	// i)), so that a run's choices are reproducible; the interleaving of
	// workers is not.
	Seed uint64
	// Tick is the interval of the timeline and of OnTick. Default 1 s.
	Tick time.Duration
	// OnTick, when set, receives every timeline point while the run goes
	// on, from a single goroutine; it must not block for long.
	OnTick func(Point)
	// OnProgress, when set, is called by Load after each insert, from
	// every worker concurrently.
	OnProgress func(inserted int64)
	// CondRMW does workload F's read-modify-write as a read of the key's
	// version and a conditional write expecting it, tried again (from the
	// current version the failure reports) up to CondAttempts times while
	// the condition does not hold; the store must be a CondStore.
	CondRMW bool
	// HotKeys, for workload "cas", makes every worker draw its keys
	// uniformly from the first HotKeys records instead of writing a key of
	// its own.
	HotKeys int
}

// CondAttempts bounds the conditional writes of one read-modify-write
// (Config.CondRMW).
const CondAttempts = 16

func (c Config) withDefaults() (Config, error) {
	if c.Workload.Name == "" && c.Workload.Ops() == nil {
		c.Workload = Workloads["a"]
	}
	if c.Distribution == "" {
		c.Distribution = c.Workload.Distribution
	}
	if c.Distribution == "" {
		c.Distribution = Zipfian
	}
	if c.Records == 0 {
		c.Records = DefaultRecords
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 && c.Operations == 0 {
		c.Duration = DefaultDuration
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.Workload.MaxScanLength == 0 {
		c.Workload.MaxScanLength = DefaultMaxScanLength
	}
	switch {
	case c.Records < 1:
		return c, fmt.Errorf("bench: records %d: need at least 1", c.Records)
	case c.ValueSize < 0:
		return c, fmt.Errorf("bench: value size %d is negative", c.ValueSize)
	case c.Concurrency < 1:
		return c, fmt.Errorf("bench: concurrency %d: need at least 1", c.Concurrency)
	case c.Duration < 0 || c.Operations < 0 || c.Warmup < 0 || c.Tick < 0:
		return c, fmt.Errorf("bench: duration, operations, warmup and tick must not be negative")
	}
	return c, nil
}

// Point is one interval of the timeline.
type Point struct {
	// Elapsed is the end of the interval, in seconds since the measured
	// part began.
	Elapsed float64 `json:"t_s"`
	// Ops is the number of successful operations in the interval.
	Ops int64 `json:"ops"`
	// Throughput is Ops per second of the interval.
	Throughput float64 `json:"ops_per_sec"`
	// P50 and P99 are latencies of the interval's successful operations, in
	// milliseconds.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	// Errors is the number of failed operations in the interval.
	Errors int64 `json:"errors"`
}

// OpResult is what one kind of operation did.
type OpResult struct {
	// Ops counts successful operations; Latency is theirs alone, since a
	// failed request's latency mostly measures a timeout.
	Ops     int64   `json:"ops"`
	Latency Latency `json:"latency"`
	// Errors counts failed operations; ErrorKinds breaks them down by
	// ErrorKind.
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// NotApplied counts the conditional writes (of cas, and of rmw's
	// attempts with Config.CondRMW) whose condition did not hold; cas
	// counts them in Ops too.
	NotApplied int64 `json:"not_applied,omitempty"`
}

// Result is the outcome of a load or run phase.
type Result struct {
	// Phase is "load" or "run".
	Phase        string       `json:"phase"`
	Workload     string       `json:"workload"`
	Distribution Distribution `json:"distribution"`
	Records      int64        `json:"records"`
	ValueSize    int          `json:"value_size"`
	Concurrency  int          `json:"concurrency"`
	// Elapsed is the measured time in seconds: from the end of the warmup
	// until the last operation finished.
	Elapsed float64 `json:"duration_s"`
	// Ops and Errors count successful and failed operations of every kind;
	// Throughput is Ops per second of Elapsed.
	Ops        int64   `json:"ops"`
	Throughput float64 `json:"ops_per_sec"`
	Errors     int64   `json:"errors"`
	// ErrorKinds counts the errors of every kind by ErrorKind.
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// Latency summarises every successful operation together.
	Latency Latency `json:"latency"`
	// Operations breaks the result down by operation name ("read", ...).
	Operations map[string]*OpResult `json:"operations"`
	// Timeline has one point per Config.Tick (run phase only).
	Timeline []Point `json:"timeline,omitempty"`
}

// recorder is one worker's measurements. Only its worker writes to it; the
// ticker reads and resets the interval part, hence the mutex, which is
// uncontended but once a second.
type recorder struct {
	mu         sync.Mutex
	notApplied [numOps]int64
	hists      [numOps]*hdrhistogram.Histogram
	errs       [numOps]map[string]int64
	nerrs      [numOps]int64
	interval   *hdrhistogram.Histogram
	ivErrs     int64
}

func newRecorder() *recorder { return &recorder{interval: newHist()} }

func (r *recorder) record(op Op, d time.Duration, err error) {
	var kind string
	if errors.Is(err, ErrNotApplied) {
		r.mu.Lock()
		r.notApplied[op]++
		r.mu.Unlock()
		err = nil // a definite answer: an operation like any other
	}
	if err != nil {
		kind = ErrorKind(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.errs[op] == nil {
			r.errs[op] = make(map[string]int64)
		}
		r.errs[op][kind]++
		r.nerrs[op]++
		r.ivErrs++
		return
	}
	if r.hists[op] == nil {
		r.hists[op] = newHist()
	}
	recordLatency(r.hists[op], d)
	recordLatency(r.interval, d)
}

// drainInterval moves the interval's samples into agg and returns its error
// count, starting a new interval.
func (r *recorder) drainInterval(agg *hdrhistogram.Histogram) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	agg.Merge(r.interval)
	r.interval.Reset()
	n := r.ivErrs
	r.ivErrs = 0
	return n
}

// summarize merges the recorders into a Result's totals.
func summarize(res *Result, recs []*recorder) {
	total := newHist()
	res.Operations = make(map[string]*OpResult)
	for o := range numOps {
		h := newHist()
		or := &OpResult{}
		for _, r := range recs {
			r.mu.Lock()
			if r.hists[o] != nil {
				h.Merge(r.hists[o])
			}
			or.Errors += r.nerrs[o]
			or.NotApplied += r.notApplied[o]
			for k, n := range r.errs[o] {
				if or.ErrorKinds == nil {
					or.ErrorKinds = make(map[string]int64)
				}
				or.ErrorKinds[k] += n
			}
			r.mu.Unlock()
		}
		if h.TotalCount() == 0 && or.Errors == 0 {
			continue
		}
		or.Ops = h.TotalCount()
		or.Latency = Summarize(h)
		total.Merge(h)
		res.Operations[o.String()] = or
		res.Ops += or.Ops
		res.Errors += or.Errors
		for k, n := range or.ErrorKinds {
			if res.ErrorKinds == nil {
				res.ErrorKinds = make(map[string]int64)
			}
			res.ErrorKinds[k] += n
		}
	}
	res.Latency = Summarize(total)
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Ops) / res.Elapsed
	}
}

// Load inserts records 0 … Records−1 (named by KeyName) with Concurrency
// workers. Failed inserts are counted, not retried beyond what the store
// does itself; the workloads then count reads of those keys as not_found.
// It returns the partial result and ctx's error when ctx ends first.
func Load(ctx context.Context, s Store, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	recs := make([]*recorder, cfg.Concurrency)
	var next, inserted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range recs {
		recs[i] = newRecorder()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			value := make([]byte, cfg.ValueSize)
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= cfg.Records {
					return
				}
				fillValue(r, value)
				t0 := time.Now()
				err := s.Insert(ctx, KeyName(k), value)
				recs[i].record(OpInsert, time.Since(t0), err)
				n := inserted.Add(1)
				if cfg.OnProgress != nil {
					cfg.OnProgress(n)
				}
			}
		})
	}
	wg.Wait()
	res := &Result{
		Phase: "load", Workload: cfg.Workload.Name, Distribution: cfg.Distribution,
		Records: cfg.Records, ValueSize: cfg.ValueSize, Concurrency: cfg.Concurrency,
		Elapsed: time.Since(start).Seconds(),
	}
	summarize(res, recs)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: load stopped after %d of %d records: %w", inserted.Load(), cfg.Records, err)
	}
	return res, nil
}

// runner is the state of one Run.
type runner struct {
	cfg   Config
	store Store
	ops   *OpChooser
	keys  KeyChooser
	seq   *AckCounter
	recs  []*recorder

	measuring atomic.Bool
	stop      atomic.Bool
	claimed   atomic.Int64
}

// Run runs cfg's workload against s, whose records Load inserted, and
// returns what it measured. Workers run closed loops: each sends its next
// request when the previous one returns, so latencies are service times
// under the offered concurrency, without coordinated-omission correction.
// When ctx ends, Run stops the workers and returns the partial result with
// ctx's error.
func Run(ctx context.Context, s Store, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rn := &runner{cfg: cfg, store: s, seq: NewAckCounter(cfg.Records), recs: make([]*recorder, cfg.Concurrency)}
	if rn.ops, err = NewOpChooser(cfg.Workload); err != nil {
		return nil, err
	}
	if rn.keys, err = NewKeyChooser(cfg.Distribution, cfg.Records, rn.seq); err != nil {
		return nil, err
	}

	// Without a warmup every operation counts, the first ones included.
	rn.measuring.Store(cfg.Warmup == 0)
	measureStart := time.Now()
	var wg sync.WaitGroup
	for i := range rn.recs {
		rn.recs[i] = newRecorder()
		wg.Go(func() { rn.worker(ctx, i) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	if cfg.Warmup > 0 {
		t := time.NewTimer(cfg.Warmup)
		select {
		case <-t.C:
		case <-done:
		case <-ctx.Done():
		}
		t.Stop()
		measureStart = time.Now()
		rn.measuring.Store(true)
	}

	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	var timeline []Point
	lastTick := measureStart
	// drain collects the samples since the last tick.
	drain := func() (*hdrhistogram.Histogram, int64) {
		agg := newHist()
		var errs int64
		for _, r := range rn.recs {
			errs += r.drainInterval(agg)
		}
		return agg, errs
	}
	tick := func(now time.Time) {
		agg, errs := drain()
		iv := now.Sub(lastTick)
		lastTick = now
		if len(timeline) > 0 && iv < cfg.Tick/10 {
			// A sliver of an interval (the deadline right after a
			// tick): rated on its own it would show as a spike, so its
			// operations are counted in the previous point.
			last := &timeline[len(timeline)-1]
			last.Ops += agg.TotalCount()
			last.Errors += errs
			return
		}
		p := Point{
			Elapsed:    now.Sub(measureStart).Seconds(),
			Ops:        agg.TotalCount(),
			Throughput: float64(agg.TotalCount()) / iv.Seconds(),
			P50:        float64(agg.ValueAtQuantile(50)) / 1000,
			P99:        float64(agg.ValueAtQuantile(99)) / 1000,
			Errors:     errs,
		}
		timeline = append(timeline, p)
		if cfg.OnTick != nil {
			cfg.OnTick(p)
		}
	}
loop:
	for {
		select {
		case now := <-ticker.C:
			tick(now)
		case now := <-deadline:
			// The timeline ends here; the operations in flight finish
			// below and are added to the last point.
			rn.stop.Store(true)
			deadline = nil
			tick(now)
		case <-ctx.Done():
			rn.stop.Store(true)
			<-done
			break loop
		case <-done:
			break loop
		}
	}
	end := time.Now()
	if len(timeline) > 0 && (rn.stop.Load() || end.Sub(lastTick) < cfg.Tick/10) {
		// Stragglers after the deadline, or a sliver of an interval:
		// counted in the last point rather than plotted as a spike of
		// their own.
		agg, errs := drain()
		last := &timeline[len(timeline)-1]
		last.Ops += agg.TotalCount()
		last.Errors += errs
	} else {
		tick(end)
	}
	res := &Result{
		Phase: "run", Workload: cfg.Workload.Name, Distribution: cfg.Distribution,
		Records: cfg.Records, ValueSize: cfg.ValueSize, Concurrency: cfg.Concurrency,
		Elapsed:  end.Sub(measureStart).Seconds(),
		Timeline: timeline,
	}
	summarize(res, rn.recs)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: run stopped early: %w", err)
	}
	return res, nil
}

// worker runs operations until the run stops.
func (rn *runner) worker(ctx context.Context, i int) {
	r := rand.New(rand.NewPCG(rn.cfg.Seed, uint64(i)))
	value := make([]byte, rn.cfg.ValueSize)
	ws := &workerState{id: i, versions: map[string]any{}}
	rec := rn.recs[i]
	for !rn.stop.Load() && ctx.Err() == nil {
		measured := rn.measuring.Load()
		if measured && rn.cfg.Operations > 0 && rn.claimed.Add(1) > rn.cfg.Operations {
			return
		}
		op := rn.ops.Next(r)
		t0 := time.Now()
		err := rn.do(ctx, op, r, value, ws)
		d := time.Since(t0)
		if measured && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
			rec.record(op, d, err)
			if ws.notApplied > 0 {
				rec.mu.Lock()
				rec.notApplied[op] += ws.notApplied
				rec.mu.Unlock()
			}
		}
		ws.notApplied = 0
	}
}

// nextKey draws a key number whose insert has finished. Zipfian and Uniform
// draw among the loaded records and Latest below the acknowledged limit, so
// the loop runs once; it is there for choosers that do not know the limit.
func (rn *runner) nextKey(r *rand.Rand) int64 {
	for {
		if k := rn.keys.Next(r); k <= rn.seq.Last() {
			return k
		}
	}
}

// workerState is what a worker remembers between operations: the
// versions it last saw of the keys it compare-and-sets.
type workerState struct {
	id       int
	versions map[string]any
	// notApplied counts the failed conditions of the current
	// read-modify-write, recorded apart.
	notApplied int64
}

// do performs one operation of kind op.
func (rn *runner) do(ctx context.Context, op Op, r *rand.Rand, value []byte, ws *workerState) error {
	s := rn.store
	switch op {
	case OpRead:
		return s.Read(ctx, KeyName(rn.nextKey(r)))
	case OpUpdate:
		fillValue(r, value)
		return s.Update(ctx, KeyName(rn.nextKey(r)), value)
	case OpInsert:
		k := rn.seq.Next()
		fillValue(r, value)
		err := s.Insert(ctx, KeyName(k), value)
		rn.seq.Ack(k)
		return err
	case OpScan:
		n := 1 + r.IntN(max(rn.cfg.Workload.MaxScanLength, 1))
		return s.Scan(ctx, KeyName(rn.nextKey(r)), n)
	case OpCas:
		cs, ok := s.(CondStore)
		if !ok {
			return errors.New("bench: workload cas needs a store with compare-and-set")
		}
		key := KeyName(int64(ws.id) % rn.cfg.Records)
		if rn.cfg.HotKeys > 0 {
			key = KeyName(r.Int64N(min(int64(rn.cfg.HotKeys), rn.cfg.Records)))
		}
		ver, ok := ws.versions[key]
		if !ok {
			v, err := cs.ReadVersion(ctx, key)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			// A key the load did not write (an insert failed) is created
			// by the first compare-and-set, which expects it absent.
			ver = v
		}
		fillValue(r, value)
		cur, err := cs.UpdateIf(ctx, key, ver, value)
		if err == nil || errors.Is(err, ErrNotApplied) {
			ws.versions[key] = cur
		} else {
			delete(ws.versions, key) // read it again
		}
		return err
	case OpReadModifyWrite:
		key := KeyName(rn.nextKey(r))
		if cs, ok := s.(CondStore); ok && rn.cfg.CondRMW {
			ver, err := cs.ReadVersion(ctx, key)
			if err != nil {
				return err
			}
			fillValue(r, value)
			for range CondAttempts {
				if ver, err = cs.UpdateIf(ctx, key, ver, value); !errors.Is(err, ErrNotApplied) {
					return err
				}
				ws.notApplied++
			}
			return &KindError{Kind: "not_applied_after_retries", Err: err}
		} else if rn.cfg.CondRMW {
			return errors.New("bench: --rmw cas needs a store with compare-and-set")
		}
		if err := s.Read(ctx, key); err != nil {
			return err
		}
		fillValue(r, value)
		return s.Update(ctx, key, value)
	}
	return fmt.Errorf("bench: unknown operation %v", op)
}

// fillValue overwrites v with random printable bytes. Printable, because
// some stores' clients take values as strings; random, so that no store can
// compress its way to a better figure.
func fillValue(r *rand.Rand, v []byte) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	for i := 0; i < len(v); {
		x := r.Uint64()
		for j := 0; j < 10 && i < len(v); j++ {
			v[i] = alphabet[x&63]
			x >>= 6
			i++
		}
	}
}

// OpNames returns the operation names in res in a stable order (read,
// update, insert, scan, rmw).
func OpNames(res *Result) []string {
	var out []string
	for o := range numOps {
		if _, ok := res.Operations[o.String()]; ok {
			out = append(out, o.String())
		}
	}
	return out
}

// sortedKinds returns the keys of m in order, for stable reports.
func sortedKinds(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
