package history

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecorderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(time.Now(), &buf)
	r.SetPhase(PhaseFaults)
	inv := r.Append(Op{Process: 3, Client: 3, Type: Invoke, F: FWrite, Key: "k", Value: Int(7), Level: "quorum"})
	r.Append(Op{Process: NemesisProcess, Type: Info, F: "start-partition", Fault: &Fault{Kind: "partition", Grudge: map[string][]string{"n1": {"n2"}}}})
	r.Append(Op{Process: 3, Client: 3, Type: OK, F: FWrite, Key: "k", Value: Int(7), Level: "quorum", Node: "n2", Epoch: 4, Version: &Version{Timestamp: 99, Node: 2}, Acked: 2, Required: 2, N: 3})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if inv.Index != 1 || inv.Phase != PhaseFaults || inv.Time <= 0 {
		t.Errorf("stamping: %+v", inv)
	}
	back, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r.Ops()) {
		t.Errorf("round trip:\n%+v\n%+v", back, r.Ops())
	}
	// A run cut off mid-line keeps what was complete.
	var w bytes.Buffer
	Write(&w, back)
	cut := w.String()[:w.Len()-10]
	part, err := Read(strings.NewReader(cut))
	if err != nil || len(part) != len(back)-1 {
		t.Errorf("truncated history: %d ops, %v", len(part), err)
	}
	if _, err := Read(strings.NewReader("{bad}\n{}\n")); err == nil {
		t.Error("malformed line accepted")
	}
}

func TestPairsAndWindows(t *testing.T) {
	ops := []Op{
		{Index: 0, Time: 10, Process: 0, Type: Invoke, F: FWrite, Key: "a", Value: Int(1)},
		{Index: 1, Time: 20, Process: 1, Type: Invoke, F: FRead, Key: "a"},
		{Index: 2, Time: 25, Process: NemesisProcess, Type: Invoke, F: "start-kill"},
		{Index: 3, Time: 30, Process: NemesisProcess, Type: Info, F: "start-kill", Fault: &Fault{Kind: "kill", Targets: []string{"n1"}}},
		{Index: 4, Time: 40, Process: 1, Type: OK, F: FRead, Key: "a", Value: Int(1)},
		{Index: 5, Time: 50, Process: NemesisProcess, Type: Info, F: "stop-kill"},
		{Index: 6, Time: 60, Process: 2, Type: Invoke, F: FRead, Key: "b"},
		{Index: 7, Time: 70, Process: NemesisProcess, Type: Info, F: "start-pause"},
		{Index: 8, Time: 90, Process: NemesisProcess, Type: Info, F: "heal"},
		{Index: 9, Time: 100, Process: ProbeProcess, Type: Info, F: FPhase, Phase: PhaseFinal},
	}
	ps := Pairs(ops)
	if len(ps) != 3 || ps[0].Completion != nil || ps[0].Type() != Info || ps[1].Completion.Index != 4 || ps[2].Return() != -1 {
		t.Fatalf("pairs %+v", ps)
	}
	ws := FaultWindows(ops)
	want := []Window{{Kind: "kill", Start: 25, End: 50, Detail: "kill [n1]"}, {Kind: "pause", Start: 70, End: 90}}
	if !reflect.DeepEqual(ws, want) {
		t.Errorf("windows %+v, want %+v", ws, want)
	}
	if !Active(ws, 30) || Active(ws, 60) || !Active(ws, 80) {
		t.Error("Active")
	}
}

func TestVersionOrder(t *testing.T) {
	a, b, c := Version{Timestamp: 5, Node: 9}, Version{Timestamp: 6, Node: 1}, Version{Timestamp: 6, Node: 2}
	if !a.Less(b) || !b.Less(c) || c.Less(a) || a.Less(a) || !(Version{}).IsZero() {
		t.Error("version order")
	}
	if got := (Version{Timestamp: 1000 << 16}).WallTime(); got.UnixMilli() != 1000 {
		t.Errorf("wall time %v", got)
	}
}
