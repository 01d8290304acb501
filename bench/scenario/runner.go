package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// armState is an arm's state across the run.
type armState struct {
	Arm
	tracker *Tracker
	value   []byte
	// next is the index of the next workload item of the current phase;
	// the arm's slices continue where the previous one stopped.
	next uint64
}

// clients are the bench's two client connections: writes and the reads of
// read-heavy phases go through w, the reads that follow writes in the
// write-heavy phase through r, as another client of the same data would.
type clients struct {
	w, r *client.Client
}

// runSlice runs arm a's workload for d, recording into rec, and returns
// when every operation it started has finished. It fails only when ctx
// ends; failed operations are recorded as errors.
func runSlice(ctx context.Context, cfg Config, cl clients, a *armState, w *workload, d time.Duration, rec sinks) error {
	start := time.Now()
	end := start.Add(d)
	var (
		wg    sync.WaitGroup // workers and the reads they left behind
		taken atomic.Uint64
		first = a.next
		items uint64 // paced: the items of this slice
		every time.Duration
	)
	if !cfg.closedLoop() {
		perSec := float64(cfg.Rate) / float64(w.opsPerUnit())
		items = uint64(d.Seconds() * perSec)
		every = time.Duration(float64(time.Second) / perSec)
	}
	ks := client.WithKeyspace(a.Keyspace)
	read := func(c *client.Client, key []byte) {
		t0 := time.Now()
		res, err := c.Get(ctx, key, ks)
		lat := time.Since(t0)
		if err != nil {
			if ctx.Err() == nil {
				rec.err()
			}
			return
		}
		stale, age := a.tracker.Check(string(key), t0, res.Found, res.Version)
		rec.read(lat, stale, age)
	}
	write := func(key []byte) {
		t0 := time.Now()
		res, err := cl.w.Put(ctx, key, a.value, ks)
		lat := time.Since(t0)
		if err != nil {
			// An unknown outcome is not an acknowledgement: reads are
			// not expected to see it (and may).
			if ctx.Err() == nil {
				rec.err()
			}
			return
		}
		a.tracker.Acked(string(key), res.Version, time.Now())
		rec.write(lat)
	}
	run := func(o op) {
		key := keyName(o.Key)
		switch {
		case o.Write && o.Read:
			write(key)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if o.Delay > 0 {
					t := time.NewTimer(o.Delay)
					defer t.Stop()
					select {
					case <-t.C:
					case <-ctx.Done():
						return
					}
				}
				read(cl.r, key)
			}()
		case o.Write:
			write(key)
		default:
			read(cl.w, key)
		}
	}
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if cfg.closedLoop() {
					if !time.Now().Before(end) {
						return
					}
					run(w.at(first + taken.Add(1) - 1))
					continue
				}
				j := taken.Add(1) - 1
				if j >= items {
					return
				}
				slot := start.Add(time.Duration(j) * every)
				if wait := time.Until(slot); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return
					}
				} else if -wait > lateAfter {
					rec.late()
				}
				run(w.at(first + j))
			}
		}()
	}
	wg.Wait()
	if cfg.closedLoop() {
		a.next = first + taken.Load()
	} else {
		a.next = first + items
	}
	rec.active(max(d, time.Since(start)))
	return ctx.Err()
}

// load writes every key of the arm once at level all, so that reads find
// them and every replica holds them before the measurement starts.
func load(ctx context.Context, c *client.Client, a *armState, keys, concurrency int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= keys || ctx.Err() != nil {
					return
				}
				key := keyName(k)
				var res *client.WriteResult
				var err error
				// Retry: a load that leaves keys out would make the first
				// reads of those keys look like misses.
				for attempt := 0; attempt < 5; attempt++ {
					res, err = c.Put(ctx, key, a.value, client.WithKeyspace(a.Keyspace), client.WithConsistency(client.All))
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("loading %s into %s: %w", key, a.Keyspace, err)
					return
				}
				a.tracker.Acked(string(key), res.Version, time.Now())
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// valueOf returns the value the arm writes: its size matters, not its
// content.
func valueOf(size int) []byte { return bytes.Repeat([]byte{'v'}, size) }
