package storage

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzRecordCodec feeds arbitrary bytes to the decoders of what a replica
// reads back from pebble: an engine key and a stored value. Decoding never
// panics, every refusal wraps ErrCorrupt, and whatever decodes re-encodes to
// exactly the bytes it came from, so a decoded record is never a misreading
// of a different one. The same bytes, taken as fields, must also survive
// encode-then-decode unchanged.
func FuzzRecordCodec(f *testing.F) {
	v := Version{Timestamp: 0x0102030405060708, Node: 0x0a0b0c0d}
	f.Add(appendKey(nil, "ks", []byte("k")), appendValue(nil, &Record{Value: []byte("v"), Version: v}))
	f.Add(appendKey(nil, "\x01hints", []byte("n1\x00\x00\x00\x00\x00\x00\x00\x00\x07")), appendValue(nil, &Record{Version: v, Tombstone: true}))
	f.Add([]byte("d\x00"), []byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		ks, user, err := decodeKey(key)
		switch {
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("decodeKey(%q) error %v does not wrap ErrCorrupt", key, err)
		case err == nil:
			if checkKeyspace(ks) != nil || checkKey(user) != nil {
				t.Fatalf("decodeKey(%q) = %q, %q: not a keyspace and key the engine accepts", key, ks, user)
			}
			if re := appendKey(nil, ks, user); !bytes.Equal(re, key) {
				t.Fatalf("decodeKey(%q) = %q, %q, which encodes to %q", key, ks, user, re)
			}
		}
		ver, tomb, val, err := decodeValue(value)
		switch {
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("decodeValue(%q) error %v does not wrap ErrCorrupt", value, err)
		case err == nil:
			if tomb && val != nil {
				t.Fatalf("decodeValue(%q): tombstone with value %q", value, val)
			}
			rec := Record{Value: val, Version: ver, Tombstone: tomb}
			if re := appendValue(nil, &rec); !bytes.Equal(re, value) {
				t.Fatalf("decodeValue(%q) = %+v, which encodes to %q", value, rec, re)
			}
		}

		// Encoder first: the fuzz bytes as a keyspace, a key and a value.
		if name := strings.ReplaceAll(string(value), "\x00", ""); name != "" && len(key) > 0 {
			ks, user, err := decodeKey(appendKey(nil, name, key))
			if err != nil || ks != name || !bytes.Equal(user, key) {
				t.Fatalf("key round trip of %q/%q = %q/%q, %v", name, key, ks, user, err)
			}
		}
		for _, tomb := range []bool{false, true} {
			in := Record{Value: key, Version: Version{Timestamp: uint64(len(value)) << 40, Node: uint32(len(key))}, Tombstone: tomb}
			gv, gt, gval, err := decodeValue(appendValue(nil, &in))
			want := in.Value
			if tomb || len(want) == 0 {
				want = nil
			}
			if err != nil || gv != in.Version || gt != tomb || !bytes.Equal(gval, want) || (gval == nil) != (want == nil) {
				t.Fatalf("value round trip of %+v = %+v %v %q, %v", in, gv, gt, gval, err)
			}
		}
	})
}

// FuzzRaftLogCodec feeds arbitrary bytes to the decoder of the metadata log's
// entries as the Raft store reads them from pebble. It never panics, every
// refusal wraps ErrCorrupt, an accepted entry re-encodes to the same bytes,
// and the decoded byte fields do not alias the input (pebble reuses it).
func FuzzRaftLogCodec(f *testing.F) {
	f.Add(appendRaftLog(nil, &raft.Log{}))
	f.Add(appendRaftLog(nil, &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte(`{"op":"create"}`)}))
	f.Add(appendRaftLog(nil, &raft.Log{Index: 1<<64 - 1, Term: 7, Type: raft.LogConfiguration, Data: []byte{0}, Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123456789)}))
	f.Add(appendRaftLog(nil, &raft.Log{Index: 3, Term: 2, Type: raft.LogNoop, AppendedAt: time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var l raft.Log
		err := decodeRaftLog(b, &l)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRaftLog(%x) error %v does not wrap ErrCorrupt", b, err)
			}
			return
		}
		if re := appendRaftLog(nil, &l); !bytes.Equal(re, in) {
			t.Fatalf("decodeRaftLog(%x) = %+v, which encodes to %x", in, l, re)
		}
		for i := range b {
			b[i] ^= 0xff
		}
		if re := appendRaftLog(nil, &l); !bytes.Equal(re, in) {
			t.Fatalf("decoded entry %+v aliases its input", l)
		}
	})
}
