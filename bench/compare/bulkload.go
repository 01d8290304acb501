package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adaptkv/adaptkv/bench"
)

// Loading ten million records one insert at a time through the workload
// generator's 32 workers would take the better part of an hour per system
// on this machine, which is why --bulk-load exists: each system is loaded
// through the fastest path its own client offers that still stores the
// records as the measured phases find them (every replica, fsynced, the
// same keys and value sizes as bench.Load): adaptkv through many concurrent
// SDK inserts at level one, which the SDK's per-node Batch stream coalesces
// into batches; etcd through Txns of etcdTxnOps puts (its default
// --max-txn-ops); Redis through pipelines.

// Bulk loading parameters per system.
const (
	// adaptkvBulkWorkers stays under the three nodes' admission bounds
	// (32 client requests in flight each by default), past which they
	// refuse inserts as OVERLOADED.
	adaptkvBulkWorkers = 48
	etcdTxnOps         = 128 // etcd's default --max-txn-ops
	etcdBulkWorkers    = 16
	redisPipeline      = 512
	redisBulkWorkers   = 8
)

// putBatch stores the records keys[i] = vals[i] in one request (or one
// request each, for stores that take one key per request).
type putBatch func(ctx context.Context, keys []string, vals [][]byte) error

// bulkLoad inserts records 0..records-1 as chunks of batch consecutive keys
// taken by workers goroutines, each chunk through put, and logs progress
// every progressEvery. It returns the load's result as bench.Load would
// (ops, elapsed, throughput, errors); a failed chunk counts each of its
// records as an error and the load goes on.
func bulkLoad(ctx context.Context, name string, records int64, valueSize, workers, batch int, seed uint64, put putBatch) (*bench.Result, error) {
	var next, done, failed atomic.Int64
	var firstErr atomic.Value
	stopProgress := progressLines(ctx, "load "+name, records, &done)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			keys := make([]string, 0, batch)
			vals := make([][]byte, batch)
			for i := range vals {
				vals[i] = make([]byte, valueSize)
			}
			for ctx.Err() == nil {
				from := next.Add(int64(batch)) - int64(batch)
				if from >= records {
					return
				}
				to := min(from+int64(batch), records)
				keys = keys[:0]
				for k := from; k < to; k++ {
					fillRandom(r, vals[len(keys)])
					keys = append(keys, bench.KeyName(k))
				}
				if err := put(ctx, keys, vals[:len(keys)]); err != nil {
					failed.Add(int64(len(keys)))
					firstErr.CompareAndSwap(nil, err)
				}
				done.Add(int64(len(keys)))
			}
		})
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start).Seconds()
	res := &bench.Result{Phase: "load", Records: records, ValueSize: valueSize, Concurrency: workers,
		Elapsed: elapsed, Ops: done.Load(), Errors: failed.Load()}
	if elapsed > 0 {
		res.Throughput = float64(done.Load()) / elapsed
	}
	if e := firstErr.Load(); e != nil {
		res.ErrorKinds = map[string]int64{fmt.Sprint(e): failed.Load()}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load %s stopped after %d of %d records: %w", name, done.Load(), records, err)
	}
	return res, nil
}

// fillRandom fills b with random bytes, eight at a time, as the generator
// does: values that compress no better than real data.
func fillRandom(r *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := i; j < len(b) && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

// progressLines logs name's progress (records done of total, rate, time
// left) every few seconds until the returned stop is called: a load of
// millions of records takes minutes, and a progress bar draws only on a
// terminal.
func progressLines(ctx context.Context, name string, total int64, done *atomic.Int64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(progressEvery(total))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n := done.Load()
			el := time.Since(start)
			rate := float64(n) / el.Seconds()
			left := "?"
			if rate > 0 {
				left = (time.Duration(float64(total-n)/rate) * time.Second).Round(time.Second).String()
			}
			slog.Info(name, "done", n, "of", total, "pct", fmt.Sprintf("%.1f", 100*float64(n)/float64(total)),
				"records_per_sec", fmt.Sprintf("%.0f", rate), "elapsed", el.Round(time.Second), "left", left)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// progressEvery is how often a load of total records reports: small loads
// finish before the first report.
func progressEvery(total int64) time.Duration {
	if total >= 1_000_000 {
		return 10 * time.Second
	}
	return 5 * time.Second
}

// storeBatch loads through a bench.Store, one insert per record of the
// chunk in turn; concurrency comes from the workers. A failed insert is
// tried again, up to bulkAttempts times in all, after a short pause: an
// insert of a fixed value is idempotent, and a node that sheds load
// (OVERLOADED) did nothing.
func storeBatch(s bench.Store) putBatch {
	return func(ctx context.Context, keys []string, vals [][]byte) error {
		for i, k := range keys {
			var err error
			for attempt := range bulkAttempts {
				if err = s.Insert(ctx, k, vals[i]); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(min(5*time.Millisecond<<attempt, 200*time.Millisecond))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// bulkAttempts bounds the tries of one insert in a bulk load.
const bulkAttempts = 12

// etcdBatchSize is the puts per Txn for values of valueSize bytes: up to
// etcdTxnOps, as long as the request stays under etcdTxnBytes (a Txn of
// 128 values of 16 KiB is refused by gRPC's 2 MiB message limit, and etcd
// refuses requests over its --max-request-bytes, 1.5 MiB by default).
func etcdBatchSize(valueSize int) int {
	const perPut = 64 // key and the request's own framing, generously
	return max(1, min(etcdTxnOps, etcdTxnBytes/(valueSize+perPut)))
}

// etcdTxnBytes bounds the values and keys of one bulk-load Txn.
const etcdTxnBytes = 1 << 20

// etcdBatch loads a chunk as one etcd Txn of puts: one Raft entry and one
// fsync per member for the whole chunk.
func etcdBatch(cli *clientv3.Client) putBatch {
	return func(ctx context.Context, keys []string, vals [][]byte) error {
		ops := make([]clientv3.Op, len(keys))
		for i, k := range keys {
			ops[i] = clientv3.OpPut(k, string(vals[i]))
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		return err
	}
}

// redisBatch loads a chunk as one pipeline of SETs: one write and, with
// appendfsync always, one fsync per event-loop pass for the lot.
func redisBatch(cli *redis.Client) putBatch {
	return func(ctx context.Context, keys []string, vals [][]byte) error {
		pipe := cli.Pipeline()
		for i, k := range keys {
			pipe.Set(ctx, k, vals[i], 0)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
}
