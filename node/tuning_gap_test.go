package node

import (
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/tuner"
)

// TestReadGap: the gap runs from the write's commit to the read's start,
// so the read's latency and the write's typical latency come off the age
// of the version returned, never below zero.
func TestReadGap(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name                 string
		age, latency, writes time.Duration
		want                 time.Duration
	}{
		// The experiment's write-heavy phase at R=1 W=3: a read 5 ms after
		// the acknowledgement of a 22 ms write, itself taking 0.4 ms.
		{"write-heavy at W=3", 27400 * time.Microsecond, 400 * time.Microsecond, 22 * ms, 5 * ms},
		{"local write", 3 * ms, ms / 2, ms / 2, 2 * ms},
		{"no write latency known yet", 3 * ms, ms, 0, 2 * ms},
		{"read began before the commit", 10 * ms, ms, 22 * ms, 0},
		{"clock behind the stamp", 0, ms, ms, 0},
	}
	for _, tt := range tests {
		if got := readGap(tt.age, tt.latency, tt.writes); got != tt.want {
			t.Errorf("%s: readGap(%v, %v, %v) = %v; want %v", tt.name, tt.age, tt.latency, tt.writes, got, tt.want)
		}
	}
}

// TestNoteWrites: the median write latency of an interval is kept for the
// gap, and an interval without writes does not erase it.
func TestNoteWrites(t *testing.T) {
	var r ksRecorder
	var obs tuner.Observation
	for _, d := range []time.Duration{20, 22, 23} {
		obs.WriteLatency.Record(d * time.Millisecond)
	}
	r.noteWrites(&obs)
	got := time.Duration(r.writeP50.Load())
	if got < 21*time.Millisecond || got > 23*time.Millisecond {
		t.Errorf("write p50 kept %v; want about 22 ms", got)
	}
	r.noteWrites(&tuner.Observation{})
	if after := time.Duration(r.writeP50.Load()); after != got {
		t.Errorf("an interval without writes changed the kept write p50 from %v to %v", got, after)
	}
}
