package tuner

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func obsAt(i int, reads uint64) Observation {
	o := Observation{
		Keyspace: "ks", Start: t0.Add(time.Duration(i) * 10 * time.Second), End: t0.Add(time.Duration(i+1) * 10 * time.Second),
		Reads: reads, Writes: 1, Probed: 10, Stale: uint64(i),
		Replicas: []ReplicaObservation{{ID: "a", ReadsSent: 1}},
	}
	o.ReadLatency.Record(time.Duration(i+1) * time.Millisecond)
	return o
}

func TestObservationRates(t *testing.T) {
	o := Observation{Start: t0, End: t0.Add(4 * time.Second), Reads: 300, Writes: 100, Probed: 50, Stale: 2}
	o.Gap.RecordN(time.Millisecond, 150)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"ReadRate", o.ReadRate(), 75}, {"WriteRate", o.WriteRate(), 25}, {"ReadShare", o.ReadShare(), 0.75},
		{"StaleRate", o.StaleRate(), 0.04}, {"AtRisk", o.AtRisk(), 0.5},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
	var idle Observation
	if idle.ReadShare() != 0.5 || idle.ReadRate() != 0 || idle.StaleRate() != 0 || idle.AtRisk() != 0 {
		t.Errorf("idle observation: share %v rate %v stale %v at risk %v", idle.ReadShare(), idle.ReadRate(), idle.StaleRate(), idle.AtRisk())
	}
	r := ReplicaObservation{WritesSent: 60, ReadsSent: 40, WriteTimeouts: 3, ReadTimeouts: 2}
	if r.TimeoutRate() != 0.05 {
		t.Errorf("TimeoutRate = %v; want 0.05", r.TimeoutRate())
	}
}

func TestMerge(t *testing.T) {
	a, b := obsAt(0, 10), obsAt(1, 20)
	b.Replicas = append(b.Replicas, ReplicaObservation{ID: "b", ReadsSent: 5})
	b.Policy = Policy{N: 3, R: 1, W: 1}
	m := Merge(a, b)
	if m.Reads != 30 || m.Stale != 1 || m.Probed != 20 || !m.Start.Equal(a.Start) || !m.End.Equal(b.End) || m.Policy != b.Policy {
		t.Errorf("merged %+v", m)
	}
	if len(m.Replicas) != 2 || m.Replicas[0].ReadsSent != 2 || m.Replicas[1].ReadsSent != 5 {
		t.Errorf("merged replicas %+v; want a with 2 reads sent, then b with 5", m.Replicas)
	}
	if m.ReadLatency.Count() != 2 || a.ReadLatency.Count() != 1 {
		t.Errorf("merged latency count %d (a's %d); want 2 (1): inputs must not change", m.ReadLatency.Count(), a.ReadLatency.Count())
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(3, 0)
	if _, ok := w.Last(); ok || w.Len() != 0 || w.Merged().Reads != 0 {
		t.Errorf("empty window not empty")
	}
	for i := 0; i < 5; i++ {
		w.Push(obsAt(i, uint64(i+1)))
	}
	if w.Len() != 3 {
		t.Errorf("Len() = %d; want 3 (size bound)", w.Len())
	}
	if last, _ := w.Last(); last.Reads != 5 {
		t.Errorf("Last().Reads = %d; want 5", last.Reads)
	}
	m := w.Merged()
	if m.Reads != 3+4+5 || !m.Start.Equal(obsAt(2, 0).Start) {
		t.Errorf("Merged: reads %d from %v; want 12 from the third observation", m.Reads, m.Start)
	}
	// Span: only observations ending within 25 s of the newest stay.
	ws := NewWindow(10, 25*time.Second)
	for i := 0; i < 10; i++ {
		ws.Push(obsAt(i, 1))
	}
	if ws.Len() != 3 {
		t.Errorf("span window holds %d; want 3 (ends at 80, 90, 100 s)", ws.Len())
	}
	obs := ws.Observations()
	obs[0].Reads = 999
	if ws.Observations()[0].Reads == 999 {
		t.Errorf("Observations() exposes the window's slice")
	}
}

func TestRecorderSnapshot(t *testing.T) {
	r := NewRecorder("ks", []string{"n1", "n2"}, t0)
	var wg sync.WaitGroup
	const workers, per = 8, 1000
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r.Read(time.Duration(1+i%5) * time.Millisecond)
				r.Write(2 * time.Millisecond)
				r.Gap(time.Duration(i) * time.Microsecond)
				r.Key(uint64(i % 4)) // four hot keys
				r.Probe(i%100 == 0, i%10 == 0)
				r.Leg(g%2, LegReadRTT, time.Millisecond)
				r.Leg(g%2, LegW, time.Millisecond)
				r.Leg(5, LegW, time.Millisecond) // ignored
				r.Sent(g%2, i%2 == 0)
				if i%50 == 0 {
					r.Timeout(g%2, true)
				}
			}
		}(g)
	}
	wg.Wait()
	p := Policy{N: 2, R: 1, W: 1}
	o := r.Snapshot(t0.Add(10*time.Second), p, 2)
	n := uint64(workers * per)
	if o.Reads != n || o.Writes != n || o.ReadLatency.Count() != n || o.Gap.Count() != n {
		t.Errorf("reads %d writes %d latencies %d gaps %d; want %d each", o.Reads, o.Writes, o.ReadLatency.Count(), o.Gap.Count(), n)
	}
	if o.Probed != n || o.Stale != n/100 || o.StaleReplicas != n/10 {
		t.Errorf("probed %d stale %d behind %d; want %d, %d, %d", o.Probed, o.Stale, o.StaleReplicas, n, n/100, n/10)
	}
	if o.ReadLatency.Min() != time.Millisecond || o.ReadLatency.Max() != 5*time.Millisecond || o.ReadLatency.Mean() != 3*time.Millisecond {
		t.Errorf("read latency min %v max %v mean %v; want 1ms, 5ms, 3ms", o.ReadLatency.Min(), o.ReadLatency.Max(), o.ReadLatency.Mean())
	}
	if len(o.Replicas) != 2 || o.Replicas[0].ID != "n1" || o.Replicas[0].ReadRTT.Count() != n/2 || o.Replicas[1].W.Count() != n/2 {
		t.Errorf("replicas %+v", o.Replicas)
	}
	if o.Replicas[0].WritesSent+o.Replicas[0].ReadsSent != n/2 || o.Replicas[0].WriteTimeouts != n/2/50 {
		t.Errorf("replica n1 sent %d+%d timeouts %d", o.Replicas[0].WritesSent, o.Replicas[0].ReadsSent, o.Replicas[0].WriteTimeouts)
	}
	if o.Skew.Sampled != n/keySampleEvery || o.Skew.TopShare != 1 {
		t.Errorf("skew %+v; want %d samples, all on the hot keys", o.Skew, n/keySampleEvery)
	}
	if o.Policy != p || o.ClusterSize != 2 || !o.Start.Equal(t0) || o.Keyspace != "ks" {
		t.Errorf("snapshot header %v %d %v %q", o.Policy, o.ClusterSize, o.Start, o.Keyspace)
	}
	// The next interval starts empty, where the last one ended.
	o2 := r.Snapshot(t0.Add(20*time.Second), p, 2)
	if o2.Reads != 0 || o2.ReadLatency.Count() != 0 || o2.Skew.Sampled != 0 || !o2.Start.Equal(o.End) {
		t.Errorf("second snapshot %+v; want empty from %v", o2, o.End)
	}
	// Replica legs recorded as round trips feed the model.
	if _, err := (Model{}).Predict(o, nil, Calibration{}); err != nil && !strings.Contains(err.Error(), "no latency") {
		t.Errorf("Predict on a snapshot: %v", err)
	}
}
