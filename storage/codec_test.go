package storage

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestKeyCodec(t *testing.T) {
	cases := []struct {
		keyspace string
		key      string
		encoded  string
	}{
		{"a", "k", "da\x00k"},
		{"ab", "\x00\xff", "dab\x00\x00\xff"},
		{"\x01hints", "h", "d\x01hints\x00h"},
	}
	for _, c := range cases {
		enc := appendKey(nil, c.keyspace, []byte(c.key))
		if string(enc) != c.encoded {
			t.Errorf("appendKey(%q, %q) = %q, want %q", c.keyspace, c.key, enc, c.encoded)
		}
		ks, key, err := decodeKey(enc)
		if err != nil || ks != c.keyspace || string(key) != c.key {
			t.Errorf("decodeKey(%q) = %q, %q, %v", enc, ks, key, err)
		}
	}
	// The terminating NUL keeps a keyspace's keys below those of any longer
	// keyspace it prefixes.
	if a, ab := appendKey(nil, "a", []byte("\xff\xff")), appendKey(nil, "ab", []byte("\x00")); bytes.Compare(a, ab) >= 0 {
		t.Errorf("%q sorts after %q", a, ab)
	}
}

func TestKeyCodecCorrupt(t *testing.T) {
	for _, k := range []string{"", "x", "d", "dks", "d\x00k", "dks\x00", "xks\x00k"} {
		if _, _, err := decodeKey([]byte(k)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeKey(%q) error = %v, want ErrCorrupt", k, err)
		}
	}
}

func TestValueCodec(t *testing.T) {
	v := Version{Timestamp: 0x0102030405060708, Node: 0x0a0b0c0d}
	header := "\x01\x02\x03\x04\x05\x06\x07\x08\x0a\x0b\x0c\x0d"
	cases := []struct {
		name    string
		rec     Record
		encoded string
	}{
		{"value", Record{Value: []byte("hello"), Version: v}, header + "\x00hello"},
		{"empty value", Record{Version: v}, header + "\x00"},
		{"tombstone", Record{Version: v, Tombstone: true}, header + "\x01"},
		{"tombstone drops value", Record{Value: []byte("x"), Version: v, Tombstone: true}, header + "\x01"},
		{"zero version", Record{Value: []byte{0}}, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc := appendValue(nil, &c.rec)
			if string(enc) != c.encoded {
				t.Fatalf("appendValue = %q, want %q", enc, c.encoded)
			}
			gotV, gotTomb, gotValue, err := decodeValue(enc)
			wantValue := c.rec.Value
			if c.rec.Tombstone || len(wantValue) == 0 {
				wantValue = nil
			}
			if err != nil || gotV != c.rec.Version || gotTomb != c.rec.Tombstone || !bytes.Equal(gotValue, wantValue) || (gotValue == nil) != (wantValue == nil) {
				t.Fatalf("decodeValue = %+v, %v, %q, %v", gotV, gotTomb, gotValue, err)
			}
		})
	}
}

func TestValueCodecCorrupt(t *testing.T) {
	header := "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01"
	cases := map[string]string{
		"empty":               "",
		"short header":        header,
		"unknown flag":        header + "\x02",
		"tombstone has value": header + "\x01v",
	}
	for name, b := range cases {
		if _, _, _, err := decodeValue([]byte(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeValue error = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := ownedRecord([]byte("k"), []byte(header)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ownedRecord error = %v, want ErrCorrupt", err)
	}
}

func TestRaftLogCodec(t *testing.T) {
	cases := []raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("cmd")},
		{Index: 1<<64 - 1, Term: 7, Type: raft.LogConfiguration, Data: []byte{0}, Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123456789)},
		{Index: 3, Term: 2, Type: raft.LogNoop, AppendedAt: time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC)},
	}
	for _, want := range cases {
		enc := appendRaftLog(nil, &want)
		var got raft.Log
		if err := decodeRaftLog(enc, &got); err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
			!got.AppendedAt.Equal(want.AppendedAt) || got.AppendedAt.IsZero() != want.AppendedAt.IsZero() {
			t.Fatalf("round trip of %+v gave %+v", want, got)
		}
		if len(enc) > 0 {
			enc[len(enc)-1] ^= 0xff // decoded fields must not alias the stored bytes
			if len(want.Extensions) > 0 && !bytes.Equal(got.Extensions, want.Extensions) {
				t.Fatal("decoded Extensions alias the input")
			}
		}
	}
}

func TestRaftLogCodecCorrupt(t *testing.T) {
	good := appendRaftLog(nil, &raft.Log{Index: 1, Term: 1, Data: []byte("data"), Extensions: []byte("e")})
	badNanos := bytes.Clone(good)
	copy(badNanos[26:], "\xff\xff\xff\xff")
	badFormat := bytes.Clone(good)
	badFormat[0] = 9
	cases := map[string][]byte{
		"empty":             nil,
		"short":             good[:raftLogFixedLen-1],
		"no data length":    good[:raftLogFixedLen],
		"truncated data":    good[:raftLogFixedLen+3],
		"missing ext":       good[:raftLogFixedLen+5],
		"trailing bytes":    append(bytes.Clone(good), 0),
		"bad nanoseconds":   badNanos,
		"unknown format":    badFormat,
		"huge length":       append(bytes.Clone(good[:raftLogFixedLen]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"overflowing value": append(bytes.Clone(good[:raftLogFixedLen]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	}
	for name, b := range cases {
		var l raft.Log
		if err := decodeRaftLog(b, &l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error = %v, want ErrCorrupt", name, err)
		}
	}
}
