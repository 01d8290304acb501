package node

import (
	"encoding/json"
	"testing"
)

// A checkpoint written before any page of a keyspace was pushed holds the
// keyspace with no sources; through the metadata log (JSON, omitempty) it
// comes back with no map. The driver that resumes from it must still be
// able to record its sources' progress: it panicked (assignment to entry
// in nil map) when the Jepsen membership nemesis restarted a stream so.
func TestResumedCheckpointRecordsProgress(t *testing.T) {
	written := StreamProgress{Since: 7, Change: "join of n4", Keyspaces: map[string]KeyspaceStream{
		"default": {Epoch: 9, Sources: map[string]SourceStream{}},
	}}
	b, err := json.Marshal(written)
	if err != nil {
		t.Fatal(err)
	}
	var read StreamProgress
	if err := json.Unmarshal(b, &read); err != nil {
		t.Fatal(err)
	}
	resumed := read.clone()
	if resumed.Keyspaces["default"].Sources == nil {
		t.Fatalf("the resumed checkpoint %s has no source map for default", b)
	}
	resumed.advance("default", "n1", []byte("k42"), false)
	resumed.advance("default", "n2", nil, true)
	resumed.advance("other", "n1", []byte("a"), false)
	got := resumed.Keyspaces["default"].Sources
	if string(got["n1"].After) != "k42" || got["n1"].Done || !got["n2"].Done {
		t.Errorf("default's sources after advancing: %+v", got)
	}
	if string(resumed.Keyspaces["other"].Sources["n1"].After) != "a" {
		t.Errorf("a keyspace first seen by advance: %+v", resumed.Keyspaces["other"])
	}
	var empty StreamProgress
	empty.advance("default", "n1", []byte("k"), false) // no map at all
	if string(empty.Keyspaces["default"].Sources["n1"].After) != "k" {
		t.Errorf("advance on an empty progress: %+v", empty)
	}
}
