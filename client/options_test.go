package client

import (
	"bytes"
	"errors"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"google.golang.org/protobuf/proto"
)

func TestOptions(t *testing.T) {
	tests := []struct {
		name     string
		scan     bool
		opts     []CallOption
		keyspace string
		cons     *kvpb.Consistency
		check    func(t *testing.T, o callOptions)
		wantErr  bool
	}{
		{name: "defaults", keyspace: DefaultKeyspace},
		{name: "nil option ignored", opts: []CallOption{nil}, keyspace: DefaultKeyspace},
		{name: "keyspace", opts: []CallOption{WithKeyspace("users")}, keyspace: "users"},
		{name: "empty keyspace", opts: []CallOption{WithKeyspace("")}, wantErr: true},
		{name: "one", opts: []CallOption{WithConsistency(One)}, keyspace: DefaultKeyspace,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_ONE}},
		{name: "quorum", opts: []CallOption{WithConsistency(Quorum)}, keyspace: DefaultKeyspace,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_QUORUM}},
		{name: "all", opts: []CallOption{WithConsistency(All)}, keyspace: DefaultKeyspace,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_ALL}},
		{name: "explicit default", opts: []CallOption{WithConsistency(Quorum), WithConsistency(LevelDefault)}, keyspace: DefaultKeyspace},
		{name: "rw", opts: []CallOption{WithRW(2, 3)}, keyspace: DefaultKeyspace,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_CUSTOM, R: 2, W: 3}},
		{name: "level after rw clears r and w", opts: []CallOption{WithRW(2, 3), WithConsistency(One)}, keyspace: DefaultKeyspace,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_ONE}},
		{name: "rw zero", opts: []CallOption{WithRW(0, 1)}, wantErr: true},
		{name: "rw negative", opts: []CallOption{WithRW(1, -1)}, wantErr: true},
		{name: "custom without rw", opts: []CallOption{WithConsistency(Custom)}, wantErr: true},
		{name: "unknown level", opts: []CallOption{WithConsistency(Level(9))}, wantErr: true},
		{name: "prefix on get", opts: []CallOption{WithPrefix([]byte("a"))}, wantErr: true},
		{name: "limit on get", opts: []CallOption{WithLimit(1)}, wantErr: true},
		{name: "scan prefix", scan: true, opts: []CallOption{WithPrefix([]byte("a")), WithLimit(10)}, keyspace: DefaultKeyspace,
			check: func(t *testing.T, o callOptions) {
				if !bytes.Equal(o.prefix, []byte("a")) || o.limit != 10 || o.start != nil || o.end != nil {
					t.Errorf("got %+v", o)
				}
			}},
		{name: "scan range", scan: true, opts: []CallOption{WithRange([]byte("a"), []byte("b"))}, keyspace: DefaultKeyspace,
			check: func(t *testing.T, o callOptions) {
				if string(o.start) != "a" || string(o.end) != "b" || o.prefix != nil {
					t.Errorf("got %+v", o)
				}
			}},
		{name: "scan open range", scan: true, opts: []CallOption{WithRange([]byte("z"), nil)}, keyspace: DefaultKeyspace},
		{name: "scan inverted range", scan: true, opts: []CallOption{WithRange([]byte("b"), []byte("a"))}, wantErr: true},
		{name: "scan prefix and range", scan: true, opts: []CallOption{WithPrefix([]byte("a")), WithRange(nil, nil)}, wantErr: true},
		{name: "scan negative limit", scan: true, opts: []CallOption{WithLimit(-1)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := buildOptions("op", tt.scan, tt.opts)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("err = %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.keyspace != tt.keyspace {
				t.Errorf("keyspace = %q, want %q", o.keyspace, tt.keyspace)
			}
			if got := o.consistency(); !proto.Equal(got, tt.cons) {
				t.Errorf("consistency = %v, want %v", got, tt.cons)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestLevelRoundTrip(t *testing.T) {
	for _, l := range []Level{LevelDefault, One, Quorum, All, Custom} {
		if got := levelFromPB(levelToPB(l)); got != l {
			t.Errorf("%v round-trips to %v", l, got)
		}
		if l.String() == "" {
			t.Errorf("%d has no name", l)
		}
	}
	if Level(42).String() != "level(42)" {
		t.Error(Level(42).String())
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte("abc"), []byte("abd")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
		{nil, nil},
	}
	for _, tt := range tests {
		if got := PrefixEnd(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	in := []byte("ab")
	PrefixEnd(in)
	if string(in) != "ab" {
		t.Error("PrefixEnd modified its argument")
	}
}

func TestKeyspaceSpec(t *testing.T) {
	tests := []struct {
		spec    KeyspaceSpec
		rf      uint32
		cons    *kvpb.Consistency
		wantErr bool
	}{
		{spec: KeyspaceSpec{}, rf: 0},
		{spec: KeyspaceSpec{ReplicationFactor: 3, Consistency: Quorum}, rf: 3, cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_QUORUM}},
		{spec: KeyspaceSpec{ReplicationFactor: 3, Consistency: Custom, R: 1, W: 3}, rf: 3,
			cons: &kvpb.Consistency{Level: kvpb.Level_LEVEL_CUSTOM, R: 1, W: 3}},
		{spec: KeyspaceSpec{ReplicationFactor: -1}, wantErr: true},
		{spec: KeyspaceSpec{Consistency: Custom, R: 1}, wantErr: true},
		{spec: KeyspaceSpec{Consistency: Quorum, R: 1, W: 1}, wantErr: true},
		{spec: KeyspaceSpec{R: 2, W: 2}, wantErr: true},
		{spec: KeyspaceSpec{Consistency: Level(7)}, wantErr: true},
	}
	for _, tt := range tests {
		rf, cons, err := tt.spec.validate("create_keyspace")
		if tt.wantErr {
			if err == nil || !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%+v: err = %v, want ErrInvalidArgument", tt.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tt.spec, err)
			continue
		}
		if rf != tt.rf || !proto.Equal(cons, tt.cons) {
			t.Errorf("%+v: got %d %v, want %d %v", tt.spec, rf, cons, tt.rf, tt.cons)
		}
	}
}
