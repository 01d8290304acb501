package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// RateStep is one step of an open-loop schedule: Rate operations per second,
// sent on time whatever the store does, for Duration.
type RateStep struct {
	// Name labels the step in the result ("overload", ...).
	Name     string        `json:"name"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"-"`
}

// DefaultMaxOutstanding bounds the requests an open loop keeps in flight.
// At 20,000 requests a second with a 5 s request timeout a store that
// answers nothing would need 100,000; the bench's own memory (a goroutine
// per request) would then be what is measured.
const DefaultMaxOutstanding = 20_000

// StepResult is what one step of an open loop measured. An operation
// belongs to the step of its intended send time.
type StepResult struct {
	Name     string  `json:"name"`
	Rate     float64 `json:"offered_per_sec"`
	Duration float64 `json:"duration_s"`
	// Offered counts the operations the schedule called for; Sent those
	// the bench had room to send (the rest count as errors of kind
	// "bench_backlog").
	Offered int64 `json:"offered"`
	Sent    int64 `json:"sent"`
	// Ops counts successful operations, Goodput is Ops per second of the
	// step, and Latency is theirs, from intended send time to answer.
	Ops     int64   `json:"ops"`
	Goodput float64 `json:"goodput_per_sec"`
	Latency Latency `json:"latency"`
	// Errors counts failed operations by ErrorKind ("resource_exhausted/
	// overloaded" is a request the store shed).
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// OpenPoint is one tick of an open loop's timeline, by intended send time.
type OpenPoint struct {
	// Elapsed is the end of the tick in seconds since the schedule began.
	Elapsed float64 `json:"t_s"`
	Step    string  `json:"step"`
	Offered int64   `json:"offered"`
	Ops     int64   `json:"ops"`
	Errors  int64   `json:"errors"`
	// Shed counts the errors that were the store refusing as overloaded.
	Shed int64 `json:"shed"`
	// P50 and P99 are the successful operations' latencies in ms.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// OpenResult is the outcome of RunOpenLoop.
type OpenResult struct {
	Steps    []StepResult `json:"steps"`
	Timeline []OpenPoint  `json:"timeline"`
	// MaxOutstanding is the most requests the bench had in flight at once.
	MaxOutstanding int64 `json:"max_outstanding"`
}

// openTick accumulates one tick of an open loop.
type openTick struct {
	hist                *hdrhistogram.Histogram
	offered, errs, shed int64
	ops                 int64
}

// RunOpenLoop drives s in an open loop: operation i of a step is due at
// the step's start plus i/Rate and is sent then, on a goroutine of its own,
// however many earlier ones are still waiting for their answers. Latency is
// measured from the intended send time, so a store that falls behind is
// charged for the wait it imposes (no coordinated omission, unlike a closed
// loop, whose workers stop sending when the store stalls). The workload,
// distribution, records, value size, seed and tick come from cfg;
// Concurrency, Duration, Operations and Warmup are not used. At most
// maxOutstanding requests are in flight (0: DefaultMaxOutstanding); an
// operation due while that many wait is not sent and counts as an error of
// kind "bench_backlog". It returns after the last step once every request
// sent has been answered.
func RunOpenLoop(ctx context.Context, s Store, cfg Config, steps []RateStep, maxOutstanding int) (*OpenResult, error) {
	cfg.Duration = time.Second // satisfies withDefaults; unused
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, errors.New("bench: open loop: no steps")
	}
	var total time.Duration
	for _, st := range steps {
		if st.Rate <= 0 || st.Duration <= 0 {
			return nil, fmt.Errorf("bench: open loop step %q: rate %v and duration %v must be positive", st.Name, st.Rate, st.Duration)
		}
		total += st.Duration
	}
	if maxOutstanding <= 0 {
		maxOutstanding = DefaultMaxOutstanding
	}
	ops, err := NewOpChooser(cfg.Workload)
	if err != nil {
		return nil, err
	}
	seq := NewAckCounter(cfg.Records)
	keys, err := NewKeyChooser(cfg.Distribution, cfg.Records, seq)
	if err != nil {
		return nil, err
	}

	nTicks := int((total + cfg.Tick - 1) / cfg.Tick)
	ticks := make([]openTick, nTicks)
	for i := range ticks {
		ticks[i].hist = newHist()
	}
	stepHists := make([]*hdrhistogram.Histogram, len(steps))
	stepRes := make([]StepResult, len(steps))
	for i, st := range steps {
		stepHists[i] = newHist()
		stepRes[i] = StepResult{Name: st.Name, Rate: st.Rate, Duration: st.Duration.Seconds(), ErrorKinds: map[string]int64{}}
	}
	var mu sync.Mutex // guards ticks, stepHists and stepRes
	record := func(step, tick int, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		t, sr := &ticks[min(tick, nTicks-1)], &stepRes[step]
		if err != nil {
			t.errs++
			sr.Errors++
			kind := ErrorKind(err)
			sr.ErrorKinds[kind]++
			if kind == overloadedKind {
				t.shed++
			}
			return
		}
		t.ops++
		sr.Ops++
		recordLatency(t.hist, d)
		recordLatency(stepHists[step], d)
	}

	var outstanding, maxSeen atomic.Int64
	var wg sync.WaitGroup
	r := rand.New(rand.NewPCG(cfg.Seed, 0))
	start := time.Now()
	stepStart := start
dispatch:
	for si, st := range steps {
		interval := time.Duration(float64(time.Second) / st.Rate)
		n := int64(st.Duration.Seconds() * st.Rate)
		for i := int64(0); i < n; i++ {
			due := stepStart.Add(time.Duration(i) * interval)
			if wait := time.Until(due); wait > 0 {
				// Sleep in steps of at least a millisecond and send what
				// came due meanwhile: a timer per operation would cost more
				// than the operations at tens of thousands a second.
				select {
				case <-ctx.Done():
					break dispatch
				case <-time.After(max(wait, time.Millisecond)):
				}
			} else if ctx.Err() != nil {
				break dispatch
			}
			tick := int(due.Sub(start) / cfg.Tick)
			mu.Lock()
			ticks[min(tick, nTicks-1)].offered++
			stepRes[si].Offered++
			mu.Unlock()
			if outstanding.Load() >= int64(maxOutstanding) {
				record(si, tick, 0, &KindError{Kind: "bench_backlog", Err: errors.New("bench: too many requests outstanding")})
				continue
			}
			o := outstanding.Add(1)
			if o > maxSeen.Load() {
				maxSeen.Store(o)
			}
			mu.Lock()
			stepRes[si].Sent++
			mu.Unlock()
			op := ops.Next(r)
			key := keys.Next(r)
			value := make([]byte, cfg.ValueSize)
			fillValue(r, value)
			salt := r.Int64N(1 << 40)
			wg.Go(func() {
				defer outstanding.Add(-1)
				err := doOpen(ctx, s, op, KeyName(key), value, salt, cfg.Workload.MaxScanLength)
				record(si, tick, time.Since(due), err)
			})
		}
		stepStart = stepStart.Add(st.Duration)
	}
	wg.Wait()

	res := &OpenResult{MaxOutstanding: maxSeen.Load()}
	for i := range stepRes {
		sr := &stepRes[i]
		sr.Latency = Summarize(stepHists[i])
		sr.Goodput = float64(sr.Ops) / sr.Duration
		if len(sr.ErrorKinds) == 0 {
			sr.ErrorKinds = nil
		}
		res.Steps = append(res.Steps, *sr)
	}
	var elapsed time.Duration
	si, left := 0, steps[0].Duration
	for i := range ticks {
		elapsed += cfg.Tick
		for si < len(steps)-1 && left <= 0 {
			si++
			left += steps[si].Duration
		}
		left -= cfg.Tick
		t := &ticks[i]
		res.Timeline = append(res.Timeline, OpenPoint{
			Elapsed: elapsed.Seconds(), Step: steps[si].Name, Offered: t.offered, Ops: t.ops, Errors: t.errs, Shed: t.shed,
			P50: float64(t.hist.ValueAtQuantile(50)) / 1000, P99: float64(t.hist.ValueAtQuantile(99)) / 1000,
		})
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench: open loop stopped early: %w", err)
	}
	return res, nil
}

// overloadedKind is the ErrorKind of a request the store shed.
const overloadedKind = "resource_exhausted/overloaded"

// doOpen performs one open-loop operation. Inserts write fresh keys above
// the loaded records (salt keeps concurrent inserts apart); a
// read-modify-write is a read then an update, as in Run.
func doOpen(ctx context.Context, s Store, op Op, key string, value []byte, salt int64, maxScan int) error {
	switch op {
	case OpRead:
		return s.Read(ctx, key)
	case OpUpdate:
		return s.Update(ctx, key, value)
	case OpInsert:
		return s.Insert(ctx, fmt.Sprintf("%s-open%d", key, salt), value)
	case OpScan:
		return s.Scan(ctx, key, 1+int(salt%int64(max(maxScan, 1))))
	case OpReadModifyWrite:
		if err := s.Read(ctx, key); err != nil {
			return err
		}
		return s.Update(ctx, key, value)
	}
	return fmt.Errorf("bench: unknown operation %v", op)
}
