package storage

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
)

var benchValue = make([]byte, 100)

// benchMutation writes key i with a version that grows with i, so every
// mutation is applied.
func benchMutation(buf []byte, i uint64) Mutation {
	return Mutation{"bench", Record{Key: binary.BigEndian.AppendUint64(buf[:0], i), Value: benchValue, Version: Version{Timestamp: i + 1, Node: 1}}}
}

func benchApply(b *testing.B, e Engine) {
	b.Run("single", func(b *testing.B) {
		key := make([]byte, 8)
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			if _, err := e.Apply(ctx, []Mutation{benchMutation(key, uint64(i))}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Uint64
		ctx := context.Background()
		before := e.Metrics()
		// A server has many requests in flight, not one per CPU; with too few
		// writers every group holds one Apply and group commit cannot show.
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			key := make([]byte, 8)
			for pb.Next() {
				if _, err := e.Apply(ctx, []Mutation{benchMutation(key, 1<<32+next.Add(1))}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		after := e.Metrics()
		b.ReportMetric(float64(after.Syncs-before.Syncs)/float64(b.N), "syncs/op")
	})
}

func benchGet(b *testing.B, e Engine) {
	const n = 10000
	muts := make([]Mutation, n)
	for i := range muts {
		muts[i] = benchMutation(nil, uint64(i))
	}
	if _, err := e.Apply(context.Background(), muts); err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 8)
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(key, uint64(i%n))
		if _, ok, err := e.Get("bench", key); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkPebbleApply(b *testing.B) { benchApply(b, openPebble(b, b.TempDir(), Options{})) }
func BenchmarkPebbleGet(b *testing.B)   { benchGet(b, openPebble(b, b.TempDir(), Options{})) }

// BenchmarkPebbleGetNoRowCache is the baseline of the row cache: every read
// goes to pebble.
func BenchmarkPebbleGetNoRowCache(b *testing.B) {
	benchGet(b, openPebble(b, b.TempDir(), Options{RowCacheSize: -1}))
}
func BenchmarkMemoryApply(b *testing.B) { benchApply(b, NewMemory()) }
func BenchmarkMemoryGet(b *testing.B)   { benchGet(b, NewMemory()) }

func BenchmarkCodec(b *testing.B) {
	r := Record{Key: []byte("user:12345"), Value: benchValue, Version: Version{Timestamp: 1 << 40, Node: 3}}
	var kbuf, vbuf []byte
	b.ReportAllocs()
	for b.Loop() {
		kbuf = appendKey(kbuf[:0], "users", r.Key)
		vbuf = appendValue(vbuf[:0], &r)
		if _, _, err := decodeKey(kbuf); err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := decodeValue(vbuf); err != nil {
			b.Fatal(err)
		}
	}
}
