package bench

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Store is what the workload generator drives: one adapter per system
// (adaptkv here; etcd, Redis and a bare gRPC echo in the compare module), so
// that every system sees exactly the same requests. Keys are YCSB key names
// (KeyName) and values are opaque bytes.
//
// Every method is called concurrently by all workers, so a Store must be
// safe for concurrent use. A method may keep neither key nor value after it
// returns: workers reuse their value buffers.
type Store interface {
	// Read reads key; a key that does not exist returns ErrNotFound.
	Read(ctx context.Context, key string) error
	// Update overwrites an existing key.
	Update(ctx context.Context, key string, value []byte) error
	// Insert writes a new key (the load phase and workloads D and E).
	Insert(ctx context.Context, key string, value []byte) error
	// Scan reads up to n keys in key order, starting at start.
	Scan(ctx context.Context, start string, n int) error
	// Close releases the store's connections.
	Close() error
}

// CondStore is a Store with compare-and-set, for workload F's
// read-modify-write done as a conditional write (Config.CondRMW) and for
// workload "cas". Versions are opaque tokens of the store (adaptkv's
// client.Version, etcd's mod revision).
type CondStore interface {
	Store
	// ReadVersion reads key and returns its version; a key that does not
	// exist returns ErrNotFound.
	ReadVersion(ctx context.Context, key string) (version any, err error)
	// UpdateIf writes value to key if the key's version is still version;
	// a nil version (none read: the key did not exist) expects the key
	// absent. When the condition does not hold, it returns ErrNotApplied
	// and the key's current version (nil or zero when absent).
	UpdateIf(ctx context.Context, key string, version any, value []byte) (current any, err error)
}

// ErrNotApplied is returned by CondStore.UpdateIf when the condition did
// not hold: a definite answer, counted as an operation (OpResult.Ops) and
// apart (OpResult.NotApplied), not as an error.
var ErrNotApplied = errors.New("bench: condition did not hold")

// ErrNotFound is returned by Store.Read for a key that does not exist. The
// report counts it as an error of kind "not_found": after the load every
// key a workload reads exists, so a miss is lost or not yet visible data.
var ErrNotFound = errors.New("bench: key not found")

// KindError is an error with the kind under which the report counts it; an
// adapter wraps its errors in one when it knows better than the gRPC code
// what went wrong.
type KindError struct {
	// Kind is a short snake_case name, such as "unavailable/quorum_not_reached".
	Kind string
	Err  error
}

// Error returns the wrapped error's message.
func (e *KindError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *KindError) Unwrap() error { return e.Err }

// ErrorKind classifies err for the report: the Kind of a KindError, then
// "not_found", "timeout" and "canceled", then the gRPC status code in
// snake_case, else "other". Counting by kind rather than by message keeps
// the report short when thousands of requests fail the same way.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	var ke *KindError
	switch {
	case errors.As(err, &ke) && ke.Kind != "":
		return ke.Kind
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		return CodeKind(st.Code())
	}
	return "other"
}

// CodeKind returns a gRPC code's name in snake_case: "deadline_exceeded".
func CodeKind(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
