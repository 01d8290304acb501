package paxos

import (
	"bytes"
	"errors"
	"testing"

	"github.com/adaptkv/adaptkv/storage"
)

func TestStateRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    State
		size int
	}{
		{"fresh", State{}, 6},
		{"promised", State{Promised: Ballot{Counter: 1 << 40, Node: 7}}, 11},
		{"accepted put", State{Promised: Ballot{5, 1}, Accepted: Proposal{Ballot: Ballot{5, 1},
			Record: storage.Record{Key: []byte("k"), Value: []byte("v"), Version: storage.Version{Timestamp: 11, Node: 1}}}, Committed: Ballot{4, 2}}, 14},
		{"accepted delete", State{Accepted: Proposal{Ballot: Ballot{5, 1},
			Record: storage.Record{Key: []byte("k"), Tombstone: true, Version: storage.Version{Timestamp: 11, Node: 1}}}}, 13},
		{"accepted noop", State{Promised: Ballot{6, 2}, Accepted: Proposal{Ballot: Ballot{6, 2}, Noop: true}}, 12},
	}
	for _, tt := range tests {
		enc := AppendState(nil, tt.s)
		got, err := DecodeState(enc)
		if err != nil {
			t.Fatalf("%s: DecodeState = %v", tt.name, err)
		}
		if stateString(got) != stateString(tt.s) || !recordsEqual(got.Accepted.Record, tt.s.Accepted.Record) {
			t.Errorf("%s: round trip = %s; want %s", tt.name, stateString(got), stateString(tt.s))
		}
		if len(enc) != tt.size {
			t.Errorf("%s: %d bytes; want %d", tt.name, len(enc), tt.size)
		}
	}
}

func TestDecodeStateRejectsCorruption(t *testing.T) {
	good := AppendState(nil, State{Promised: Ballot{5, 1}, Accepted: Proposal{Ballot: Ballot{5, 1},
		Record: storage.Record{Key: []byte("k"), Value: []byte("v")}}})
	tests := []struct {
		name string
		buf  []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"unknown flag", func() []byte { b := AppendState(nil, State{}); b[len(b)-1] = 0x80; return b }()},
		{"noop without accepted", func() []byte { b := AppendState(nil, State{}); b[len(b)-1] = flagNoop; return b }()},
	}
	for _, tt := range tests {
		if _, err := DecodeState(tt.buf); !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: DecodeState = %v; want ErrCorruptState", tt.name, err)
		}
	}
}

// FuzzStateCodec: whatever decodes re-encodes to the same bytes, and
// every state built from the fuzzer's fields round-trips.
func FuzzStateCodec(f *testing.F) {
	f.Add(AppendState(nil, State{}), uint64(5), uint32(1), []byte("k"), []byte("v"), byte(1))
	f.Add(AppendState(nil, State{Accepted: Proposal{Ballot: Ballot{1, 1}, Noop: true}}), uint64(1<<63), uint32(1<<31), []byte{}, []byte{0}, byte(7))
	f.Fuzz(func(t *testing.T, buf []byte, counter uint64, node uint32, key, value []byte, flags byte) {
		if s, err := DecodeState(buf); err == nil {
			if enc := AppendState(nil, s); !bytes.Equal(enc, buf) {
				t.Fatalf("decode(%x) re-encodes to %x", buf, enc)
			}
		}
		s := State{Promised: Ballot{counter, node}, Committed: Ballot{counter / 2, node / 3}}
		if flags&1 != 0 {
			s.Accepted = Proposal{Ballot: Ballot{counter | 1, node}, Noop: flags&2 != 0}
			if !s.Accepted.Noop {
				s.Accepted.Record = storage.Record{Key: key, Value: value, Tombstone: flags&4 != 0,
					Version: storage.Version{Timestamp: counter ^ 0x55, Node: node}}
				if len(key) == 0 {
					s.Accepted.Record.Key = nil
				}
				if len(value) == 0 {
					s.Accepted.Record.Value = nil
				}
			}
		}
		got, err := DecodeState(AppendState(nil, s))
		if err != nil {
			t.Fatalf("DecodeState(AppendState(%s)) = %v", stateString(s), err)
		}
		if stateString(got) != stateString(s) || !recordsEqual(got.Accepted.Record, s.Accepted.Record) {
			t.Fatalf("round trip = %s; want %s", stateString(got), stateString(s))
		}
	})
}
