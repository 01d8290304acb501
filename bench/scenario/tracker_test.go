package scenario

import (
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

func v(ts uint64) client.Version { return client.Version{Timestamp: ts, Node: 1} }

func TestTrackerCheck(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	type ack struct {
		ms int
		v  uint64
	}
	cases := []struct {
		name    string
		acks    []ack
		startMs int
		found   bool
		got     uint64
		stale   bool
		ageMs   int
	}{
		{name: "never written, not found", startMs: 10, found: false},
		{name: "read before the only ack", acks: []ack{{10, 5}}, startMs: 5, found: false},
		{name: "read at the very instant of the ack is not after it", acks: []ack{{10, 5}}, startMs: 10, found: false},
		{name: "found the acked version", acks: []ack{{10, 5}}, startMs: 20, found: true, got: 5},
		{name: "found a newer version than acked", acks: []ack{{10, 5}}, startMs: 20, found: true, got: 9},
		{name: "missing after an ack is stale", acks: []ack{{10, 5}}, startMs: 25, found: false, stale: true, ageMs: 15},
		{name: "older version is stale, age from the first missed ack", acks: []ack{{10, 5}, {20, 7}, {30, 9}}, startMs: 40, found: true, got: 5, stale: true, ageMs: 20},
		{name: "ack after the read began does not count", acks: []ack{{10, 5}, {50, 9}}, startMs: 40, found: true, got: 5},
		{name: "a late ack of an older version does not lower the bar", acks: []ack{{10, 9}, {20, 5}}, startMs: 30, found: true, got: 5, stale: true, ageMs: 20},
		{name: "out-of-order recording", acks: []ack{{30, 9}, {10, 5}}, startMs: 20, found: true, got: 5},
		{name: "out-of-order recording, later read", acks: []ack{{30, 9}, {10, 5}}, startMs: 35, found: true, got: 5, stale: true, ageMs: 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := NewTracker()
			for _, a := range c.acks {
				tr.Acked("k", v(a.v), at(a.ms))
			}
			stale, age := tr.Check("k", at(c.startMs), c.found, v(c.got))
			if stale != c.stale {
				t.Fatalf("stale = %v, want %v", stale, c.stale)
			}
			if want := time.Duration(c.ageMs) * time.Millisecond; age != want {
				t.Fatalf("age = %v, want %v", age, want)
			}
		})
	}
}

func TestTrackerKeysAreSeparate(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(1000, 0)
	tr.Acked("a", v(5), now)
	if stale, _ := tr.Check("b", now.Add(time.Second), false, client.Version{}); stale {
		t.Fatal("a write of a made a read of b stale")
	}
	if stale, _ := tr.Check("a", now.Add(time.Second), false, client.Version{}); !stale {
		t.Fatal("a read of a that found nothing after a's write is not stale")
	}
}

func TestTrackerForgetsOldAcks(t *testing.T) {
	tr := NewTracker()
	tr.Keep = time.Second
	base := time.Unix(1000, 0)
	for i := range 100 {
		tr.Acked("k", v(uint64(i+1)), base.Add(time.Duration(i)*100*time.Millisecond))
	}
	s := tr.shard("k")
	if n := len(s.keys["k"]); n > 12 {
		t.Fatalf("kept %d acknowledgements, want about Keep's worth (11)", n)
	}
	// What is kept still judges recent reads exactly.
	last := base.Add(99 * 100 * time.Millisecond)
	if stale, _ := tr.Check("k", last.Add(time.Millisecond), true, v(99)); !stale {
		t.Fatal("a read missing the newest ack is not stale")
	}
	if stale, _ := tr.Check("k", last.Add(time.Millisecond), true, v(100)); stale {
		t.Fatal("a read of the newest version is stale")
	}
}
