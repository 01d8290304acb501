package client

import (
	"container/list"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// DefaultSessionMaxKeys is how many keys a Session tracks by default.
//
// Why not smaller: a web session touching a few hundred keys (a cart, a
// profile, a feed page) keeps every per-key guarantee. Why not larger: the
// token carries every tracked key, so with 32-byte keys 1,024 of them make a
// token of about 60 KB, already too big for an HTTP header; callers handing
// tokens between requests may want fewer (WithSessionMaxKeys).
const DefaultSessionMaxKeys = 1024

// maxTokenKeys bounds what ParseSessionToken accepts whatever the session's
// cap, so that a hostile token cannot make it allocate without limit.
const maxTokenKeys = 1 << 16

// sessionTokenVersion is the first byte of an encoded token.
const sessionTokenVersion = 1

// Session is a sequence of calls that see their own effects, whatever the
// consistency level: Client.Session returns one, Client.SessionFrom resumes
// one from a token. It tracks, per (keyspace, key), the newest version it
// has written or read, and the highest timestamp it has seen on any key.
// Through it:
//
//   - read-your-writes and monotonic reads: a Get never returns a version of
//     a key older than the one the session last wrote or read there. Its
//     request carries that version; replicas behind it are skipped, and when
//     no replica in reach holds it the Get fails with ErrSessionBehind;
//   - writes-follow-reads (and monotonic writes): a Put or Delete carries
//     the highest timestamp the session has seen, and the coordinator's
//     clock moves past it before stamping, so the write orders after every
//     version the session has written or read, on any key.
//
// The per-key versions are bounded: past MaxKeys the least recently used
// key is forgotten. A forgotten key loses read-your-writes and monotonic
// reads (a later Get of it may return an older version, as a call outside a
// session may), until the session writes or reads it again. Writes-follow-
// reads is never lost: the highest timestamp is one number, kept whatever
// is evicted.
//
// A write whose outcome is unknown (ErrUnknownOutcome) is not recorded, so
// the session does not promise to read it. Scans do not go through
// sessions.
//
// A Session is safe for concurrent use; its guarantees then hold for the
// order in which the calls completed.
type Session struct {
	c       *Client
	maxKeys int

	mu   sync.Mutex
	max  uint64 // highest timestamp seen
	keys map[sessionKey]*list.Element
	lru  list.List // of *SessionKey, least recently used at the front
}

type sessionKey struct{ keyspace, key string }

// SessionOption configures a Session.
type SessionOption interface{ applySession(*Session) }

type sessionFunc func(*Session)

func (f sessionFunc) applySession(s *Session) { f(s) }

// WithSessionMaxKeys bounds how many keys the session tracks (default
// DefaultSessionMaxKeys); values below 1 are taken as 1.
func WithSessionMaxKeys(n int) SessionOption {
	return sessionFunc(func(s *Session) { s.maxKeys = max(n, 1) })
}

// Session returns a new, empty session over c.
func (c *Client) Session(opts ...SessionOption) *Session {
	s := &Session{c: c, maxKeys: DefaultSessionMaxKeys, keys: map[sessionKey]*list.Element{}}
	for _, o := range opts {
		if o != nil {
			o.applySession(s)
		}
	}
	return s
}

// SessionFrom resumes the session a token (Session.Token) describes. A
// token tracking more keys than the session's cap keeps its most recently
// used ones. A malformed token is an error matching ErrInvalidArgument.
func (c *Client) SessionFrom(token string, opts ...SessionOption) (*Session, error) {
	t, err := ParseSessionToken(token)
	if err != nil {
		return nil, err
	}
	s := c.Session(opts...)
	s.max = t.Max
	for _, k := range t.Keys {
		s.observeLocked(k.Keyspace, k.Key, k.Version)
	}
	return s, nil
}

// Get reads key as Client.Get does, never returning a version older than
// the session has written or read of it; see Session.
func (s *Session) Get(ctx context.Context, key []byte, opts ...CallOption) (*GetResult, error) {
	return s.c.Get(ctx, key, s.with(opts)...)
}

// Put writes as Client.Put does, stamped after everything the session has
// seen, and records the version written.
func (s *Session) Put(ctx context.Context, key, value []byte, opts ...CallOption) (*WriteResult, error) {
	return s.c.Put(ctx, key, value, s.with(opts)...)
}

// Delete deletes as Client.Delete does, stamped after everything the
// session has seen, and records the tombstone's version.
func (s *Session) Delete(ctx context.Context, key []byte, opts ...CallOption) (*WriteResult, error) {
	return s.c.Delete(ctx, key, s.with(opts)...)
}

// PutIf writes as Client.PutIf does and records the version written, or,
// when the condition did not hold, the current version it was checked
// against: a later read through the session never sees an older one.
func (s *Session) PutIf(ctx context.Context, key, value []byte, cond Condition, opts ...CallOption) (*CondResult, error) {
	return s.c.PutIf(ctx, key, value, cond, s.with(opts)...)
}

// DeleteIf deletes as Client.DeleteIf does and records the version as
// Session.PutIf does.
func (s *Session) DeleteIf(ctx context.Context, key []byte, cond Condition, opts ...CallOption) (*CondResult, error) {
	return s.c.DeleteIf(ctx, key, cond, s.with(opts)...)
}

func (s *Session) with(opts []CallOption) []CallOption {
	return append(opts[:len(opts):len(opts)], funcOption{func(c *callOptions) { c.session = s }})
}

// Token returns the session's state as a compact string (base64url), to
// hand the session to another process or request (Client.SessionFrom).
func (s *Session) Token() string {
	return s.Snapshot().String()
}

// Snapshot returns the session's state.
func (s *Session) Snapshot() *SessionToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &SessionToken{Max: s.max, Keys: make([]SessionKey, 0, s.lru.Len())}
	for e := s.lru.Front(); e != nil; e = e.Next() {
		k := e.Value.(*SessionKey)
		t.Keys = append(t.Keys, SessionKey{Keyspace: k.Keyspace, Key: append([]byte(nil), k.Key...), Version: k.Version})
	}
	return t
}

// minFor is the session's floor for key, nil when it tracks none.
func (s *Session) minFor(keyspace string, key []byte) *kvpb.Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[sessionKey{keyspace, string(key)}]
	if !ok {
		return nil
	}
	s.lru.MoveToBack(e)
	v := e.Value.(*SessionKey).Version
	return &kvpb.Version{Timestamp: v.Timestamp, Node: v.Node}
}

// after is the highest timestamp the session has seen.
func (s *Session) after() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// observe records that the session wrote or read version v of key.
func (s *Session) observe(keyspace string, key []byte, v Version) {
	if v.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observeLocked(keyspace, key, v)
}

func (s *Session) observeLocked(keyspace string, key []byte, v Version) {
	s.max = max(s.max, v.Timestamp)
	sk := sessionKey{keyspace, string(key)}
	if e, ok := s.keys[sk]; ok {
		k := e.Value.(*SessionKey)
		if k.Version.Less(v) {
			k.Version = v
		}
		s.lru.MoveToBack(e)
		return
	}
	s.keys[sk] = s.lru.PushBack(&SessionKey{Keyspace: keyspace, Key: append([]byte(nil), key...), Version: v})
	for s.lru.Len() > s.maxKeys {
		old := s.lru.Remove(s.lru.Front()).(*SessionKey)
		delete(s.keys, sessionKey{old.Keyspace, string(old.Key)})
	}
}

// SessionToken is a session's state, as Session.Token encodes it.
type SessionToken struct {
	// Max is the highest timestamp the session has seen, on any key.
	Max uint64
	// Keys are the tracked keys' newest versions, least recently used
	// first. Every Version.Timestamp is at most Max.
	Keys []SessionKey
}

// SessionKey is one key a session tracks.
type SessionKey struct {
	Keyspace string
	Key      []byte
	Version  Version
}

// String encodes t: base64url (no padding) of a version byte (1), then
// uvarints: Max, the number of keys, and per key the keyspace's length and
// bytes, the key's length and bytes, the timestamp and the node.
func (t *SessionToken) String() string {
	b := []byte{sessionTokenVersion}
	b = binary.AppendUvarint(b, t.Max)
	b = binary.AppendUvarint(b, uint64(len(t.Keys)))
	for _, k := range t.Keys {
		b = binary.AppendUvarint(b, uint64(len(k.Keyspace)))
		b = append(b, k.Keyspace...)
		b = binary.AppendUvarint(b, uint64(len(k.Key)))
		b = append(b, k.Key...)
		b = binary.AppendUvarint(b, k.Version.Timestamp)
		b = binary.AppendUvarint(b, uint64(k.Version.Node))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// errToken is the cause of every ParseSessionToken failure.
var errToken = errors.New("malformed session token")

// ParseSessionToken decodes a token made by Session.Token. The error, for a
// token that is not one, matches ErrInvalidArgument and says what is wrong.
func ParseSessionToken(token string) (*SessionToken, error) {
	t, err := parseSessionToken(token)
	if err != nil {
		e := localError("parse_session_token", codes.InvalidArgument, ReasonInvalidArgument, "%v", err)
		e.Cause = err
		return nil, e
	}
	return t, nil
}

func parseSessionToken(token string) (*SessionToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %w", errToken, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errToken)
	}
	if b[0] != sessionTokenVersion {
		return nil, fmt.Errorf("%w: format version %d, this client reads %d", errToken, b[0], sessionTokenVersion)
	}
	r := tokenReader{b: b[1:]}
	t := &SessionToken{Max: r.uvarint("highest timestamp")}
	n := r.uvarint("key count")
	if r.err == nil && n > maxTokenKeys {
		return nil, fmt.Errorf("%w: %d keys, more than %d", errToken, n, maxTokenKeys)
	}
	t.Keys = make([]SessionKey, 0, min(n, 64))
	seen := map[sessionKey]bool{}
	for i := uint64(0); i < n && r.err == nil; i++ {
		ks := r.bytes("keyspace")
		key := r.bytes("key")
		ts := r.uvarint("timestamp")
		node := r.uvarint("node")
		if r.err != nil {
			break
		}
		switch sk := (sessionKey{string(ks), string(key)}); {
		case len(ks) == 0 || len(key) == 0:
			return nil, fmt.Errorf("%w: key %d has an empty keyspace or key", errToken, i)
		case node > 1<<32-1:
			return nil, fmt.Errorf("%w: key %d: node number %d out of range", errToken, i, node)
		case ts == 0 || ts > t.Max:
			return nil, fmt.Errorf("%w: key %d: timestamp %d is zero or above the highest, %d", errToken, i, ts, t.Max)
		case seen[sk]:
			return nil, fmt.Errorf("%w: key %d repeats an earlier key", errToken, i)
		default:
			seen[sk] = true
		}
		t.Keys = append(t.Keys, SessionKey{Keyspace: string(ks), Key: key, Version: Version{Timestamp: ts, Node: uint32(node)}})
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last key", errToken, len(r.b))
	}
	return t, nil
}

// tokenReader decodes a token's fields; the first failure sticks.
type tokenReader struct {
	b   []byte
	err error
}

func (r *tokenReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated or invalid %s", errToken, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tokenReader) bytes(what string) []byte {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s of %d bytes, only %d left", errToken, what, n, len(r.b))
		return nil
	}
	v := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return v
}
