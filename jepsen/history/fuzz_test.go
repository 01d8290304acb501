package history

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the history reader, which reads files a
// run may have cut off mid-write. It never panics; it accepts at most one
// event per line; and what it accepts is a fixed point of Write then Read:
// writing the events back and reading them again changes nothing, so a
// history the checker reads is the history that was written.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	v := int64(7)
	ops := []Op{
		{Index: 0, Process: ProbeProcess, Client: ProbeProcess, Type: Info, F: FPhase, Phase: PhaseSetup},
		{Index: 1, Time: 10, Process: 0, Type: Invoke, F: FWrite, Key: "k1", Value: &v, Level: "quorum"},
		{Index: 2, Time: 20, Process: 0, Type: OK, F: FWrite, Key: "k1", Value: &v, Node: "n1", Epoch: 3, Version: &Version{Timestamp: 1 << 20, Node: 9}, Acked: 2, Required: 2, N: 3},
		{Index: 3, Time: 30, Process: NemesisProcess, Client: NemesisProcess, Type: Info, F: "start-partition", Fault: &Fault{Kind: "partition", Shape: "halves", Targets: []string{"n1"}, Grudge: map[string][]string{"n1": {"n2", "n3"}}}},
		{Index: 4, Time: 40, Process: 1, Client: 1, Type: OK, F: FReadAll, Values: []int64{1, 2, 3}, Raw: "\xff"},
	}
	if err := Write(&buf, ops); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()-7]) // cut off mid-line
	f.Add([]byte("{\"index\":2}\n{\"index\":1}\n\n"))
	f.Add([]byte("null\n{\"values\":[]}\n{\"fault\":{\"grudge\":{}}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, err := Read(bytes.NewReader(b))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "history: ") {
				t.Fatalf("Read error %q lacks the package prefix", err)
			}
			return
		}
		if lines := bytes.Count(b, []byte("\n")) + 1; len(ops) > lines {
			t.Fatalf("Read returned %d events from %d lines", len(ops), lines)
		}
		for i := 1; i < len(ops); i++ {
			if ops[i].Index < ops[i-1].Index {
				t.Fatalf("events out of index order: %d after %d", ops[i].Index, ops[i-1].Index)
			}
		}
		var once bytes.Buffer
		if err := Write(&once, ops); err != nil {
			t.Fatalf("Write of what Read accepted: %v", err)
		}
		again, err := Read(bytes.NewReader(once.Bytes()))
		if err != nil {
			t.Fatalf("Read of what Write wrote: %v\n%s", err, once.Bytes())
		}
		if len(again) != len(ops) {
			t.Fatalf("round trip kept %d of %d events", len(again), len(ops))
		}
		var twice bytes.Buffer
		if err := Write(&twice, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("Write(Read(Write(ops))) differs from Write(ops):\n%s\n%s", once.Bytes(), twice.Bytes())
		}
		// The derived views must not panic on whatever was read.
		_ = Pairs(ops)
		ws := FaultWindows(ops)
		for _, w := range ws {
			_ = Active(ws, w.Start)
		}
	})
}
