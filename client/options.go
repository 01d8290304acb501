package client

import (
	"bytes"
	"fmt"
	"math"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"google.golang.org/grpc/codes"
)

// DefaultKeyspace is the keyspace used when a call has no WithKeyspace.
const DefaultKeyspace = "default"

// Level is a consistency level: how many of a key's N replicas must answer
// a read (R) or acknowledge a write (W). It is the API package's api.Level,
// which the server uses too; the names below stay the SDK's.
type Level = api.Level

const (
	// LevelDefault uses the keyspace's default level.
	LevelDefault = api.LevelDefault
	// One: R = W = 1. Fastest and most available; a read may miss the
	// latest write.
	One = api.LevelOne
	// Quorum: R = W = N/2+1, so every read overlaps every acknowledged
	// write. It tolerates a minority of replicas down.
	Quorum = api.LevelQuorum
	// All: R = W = N. A read or write fails if any replica is down.
	All = api.LevelAll
	// Custom: explicit R and W, set with WithRW or KeyspaceSpec.R/W.
	// Receipts report it for such requests.
	Custom = api.LevelCustom
	// Linearizable: every read and write of the key is linearizable,
	// whatever the clocks say. Writes go through single-decree Paxos on the
	// key's replicas (two round trips uncontended), reads ask a majority
	// (one round when it agrees). Needs a majority of replicas; PutIf and
	// DeleteIf always run at this level.
	Linearizable = api.LevelLinearizable
)

// levelToPB converts a level for the wire; api.Level numbers the levels as
// the protobuf enum does. An unknown level asks for the keyspace default.
func levelToPB(l Level) kvpb.Level {
	if !l.Known() {
		return kvpb.Level_LEVEL_UNSPECIFIED
	}
	return kvpb.Level(l)
}

// levelFromPB reads a level off the wire; one this SDK does not know (a
// newer server's) reads as LevelDefault.
func levelFromPB(l kvpb.Level) Level {
	if lv := Level(l); lv.Known() {
		return lv
	}
	return LevelDefault
}

// CallOption configures one data call (Get, Put, Delete, Scan).
type CallOption interface {
	apply(*callOptions)
}

type callOptions struct {
	keyspace string
	level    Level
	r, w     int

	// Scan only.
	prefix     []byte
	start, end []byte
	hasPrefix  bool
	hasRange   bool
	limit      int
	hasLimit   bool

	// session, set by Session's methods, supplies the request's session
	// fields and learns the versions of the answer.
	session *Session

	// err is the first invalid option; reported before anything is sent.
	err string
}

type funcOption struct{ f func(*callOptions) }

func (o funcOption) apply(c *callOptions) { o.f(c) }

func (c *callOptions) fail(format string, args ...any) {
	if c.err == "" {
		c.err = fmt.Sprintf(format, args...)
	}
}

// WithKeyspace sends the call to the named keyspace instead of
// DefaultKeyspace.
func WithKeyspace(name string) CallOption {
	return funcOption{func(c *callOptions) {
		if name == "" {
			c.fail("WithKeyspace: empty keyspace name")
		}
		c.keyspace = name
	}}
}

// WithConsistency asks for a named level instead of the keyspace's default.
// Use WithRW for explicit R and W. The server never weakens it: if the level
// cannot be met the call fails, and the Receipt reports what was achieved.
func WithConsistency(l Level) CallOption {
	return funcOption{func(c *callOptions) {
		switch l {
		case LevelDefault, One, Quorum, All, Linearizable:
		case Custom:
			c.fail("WithConsistency(Custom): use WithRW(r, w) to give R and W")
		default:
			c.fail("WithConsistency: unknown level %d", int(l))
		}
		c.level, c.r, c.w = l, 0, 0
	}}
}

// WithRW asks for explicit quorums (LEVEL_CUSTOM): a read waits for r
// replicas, a write for w acknowledgements. Choose r + w > N for reads that
// see every acknowledged write. Only the one relevant to the call is used.
func WithRW(r, w int) CallOption {
	return funcOption{func(c *callOptions) {
		if r < 1 || w < 1 || r > math.MaxUint32 || w > math.MaxUint32 {
			c.fail("WithRW(%d, %d): r and w must be at least 1", r, w)
		}
		c.level, c.r, c.w = Custom, r, w
	}}
}

// WithPrefix makes Scan return only keys that start with prefix. It cannot be
// combined with WithRange; to continue a prefix scan cut short by its limit,
// use WithRange(res.NextStart, PrefixEnd(prefix)).
func WithPrefix(prefix []byte) CallOption {
	return funcOption{func(c *callOptions) {
		c.prefix, c.hasPrefix = prefix, true
	}}
}

// WithRange makes Scan return the keys in [start, end); a nil or empty end
// means no upper bound.
func WithRange(start, end []byte) CallOption {
	return funcOption{func(c *callOptions) {
		if len(end) > 0 && bytes.Compare(start, end) > 0 {
			c.fail("WithRange: start %q is after end %q", start, end)
		}
		c.start, c.end, c.hasRange = start, end, true
	}}
}

// WithLimit caps the number of items one Scan returns; 0 means the server's
// default. ScanResult.More reports whether the limit cut the result short.
func WithLimit(n int) CallOption {
	return funcOption{func(c *callOptions) {
		if n < 0 || n > math.MaxUint32 {
			c.fail("WithLimit(%d): limit must be between 0 and 2^32-1", n)
		}
		c.limit, c.hasLimit = n, true
	}}
}

// PrefixEnd returns the smallest key greater than every key that starts with
// prefix, for use as a range end; nil (no bound) when there is none.
func PrefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// buildOptions applies opts over the defaults and validates them for op. A
// Scan-only option on a point call is an error rather than ignored, because
// a caller who wrote it expected it to do something.
func buildOptions(op string, scan bool, opts []CallOption) (callOptions, *Error) {
	c := callOptions{keyspace: DefaultKeyspace}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if !scan && (c.hasPrefix || c.hasRange || c.hasLimit) {
		c.fail("WithPrefix, WithRange and WithLimit apply only to Scan")
	}
	if c.hasPrefix && c.hasRange {
		c.fail("WithPrefix and WithRange cannot be combined")
	}
	if c.err != "" {
		return c, localError(op, codes.InvalidArgument, ReasonInvalidArgument, "%s", c.err)
	}
	return c, nil
}

func (c *callOptions) consistency() *kvpb.Consistency {
	if c.level == LevelDefault {
		return nil
	}
	return &kvpb.Consistency{Level: levelToPB(c.level), R: uint32(c.r), W: uint32(c.w)}
}
