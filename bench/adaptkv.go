package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// ParseConsistency returns the level named "one", "quorum", "all" or
// "linearizable"; "" selects the keyspace's default.
func ParseConsistency(s string) (client.Level, error) {
	switch strings.ToLower(s) {
	case "":
		return client.LevelDefault, nil
	case "one":
		return client.One, nil
	case "quorum":
		return client.Quorum, nil
	case "all":
		return client.All, nil
	case "linearizable":
		return client.Linearizable, nil
	}
	return 0, fmt.Errorf("unknown consistency %q: want one, quorum, all or linearizable", s)
}

// AdaptkvStore drives an adaptkv cluster through the Go SDK, with every
// request at one consistency level in one keyspace. It is safe for
// concurrent use: the SDK client is.
type AdaptkvStore struct {
	c     *client.Client
	owned bool // Close closes c
	opts  []client.CallOption
}

// NewAdaptkvStore returns a Store over c that sends every request to
// keyspace at level (LevelDefault: the keyspace's default). Close leaves c
// open.
func NewAdaptkvStore(c *client.Client, keyspace string, level client.Level) *AdaptkvStore {
	opts := []client.CallOption{client.WithKeyspace(keyspace)}
	if level != client.LevelDefault {
		opts = append(opts, client.WithConsistency(level))
	}
	return &AdaptkvStore{c: c, opts: opts}
}

// AdaptkvOptions configure OpenAdaptkv.
type AdaptkvOptions struct {
	// Endpoints are gRPC addresses of some of the cluster's nodes.
	Endpoints []string
	// Keyspace is created when missing, with ReplicationFactor (0: the
	// server's choice). An existing keyspace is used as it is.
	Keyspace          string
	ReplicationFactor int
	// Consistency is the level of every request.
	Consistency client.Level
	// Logger receives the SDK's logs; nil discards them.
	Logger *slog.Logger
	// CertsDir and User are the client certificate to connect with (see
	// client.Config); empty CertsDir is plaintext.
	CertsDir, User string
}

// OpenAdaptkv connects to a cluster, makes sure the keyspace exists and
// serves, and returns a Store that owns its client.
func OpenAdaptkv(ctx context.Context, o AdaptkvOptions) (*AdaptkvStore, error) {
	c, err := client.New(ctx, client.Config{Endpoints: o.Endpoints, Logger: o.Logger, CertsDir: o.CertsDir, User: o.User})
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %v: %w", o.Endpoints, err)
	}
	if err := EnsureKeyspace(ctx, c, o.Keyspace, o.ReplicationFactor, o.Logger); err != nil {
		c.Close()
		return nil, err
	}
	s := NewAdaptkvStore(c, o.Keyspace, o.Consistency)
	s.owned = true
	return s, nil
}

// EnsureKeyspace creates keyspace name with replication factor rf unless it
// exists, then waits until reads at level All succeed in it. The wait is
// there because a new keyspace reaches the nodes through the metadata log:
// right after CreateKeyspace returns, a node that has not applied it yet
// would fail the first requests of the load with keyspace-not-found.
func EnsureKeyspace(ctx context.Context, c *client.Client, name string, rf int, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ks, err := c.CreateKeyspace(ctx, name, client.KeyspaceSpec{ReplicationFactor: rf})
	switch {
	case errors.Is(err, client.ErrKeyspaceExists):
		ks, err = c.DescribeKeyspace(ctx, name)
		if err != nil {
			return fmt.Errorf("bench: describe keyspace %q: %w", name, err)
		}
		if rf != 0 && ks.ReplicationFactor != rf {
			log.Warn("bench: keyspace exists with another replication factor; using it as it is",
				"keyspace", name, "rf", ks.ReplicationFactor, "wanted_rf", rf)
		}
	case err != nil:
		return fmt.Errorf("bench: create keyspace %q (rf %d): %w", name, rf, err)
	}
	log.Debug("bench: keyspace ready", "keyspace", name, "rf", ks.ReplicationFactor, "epoch", ks.Epoch)

	// Probe keys whose replica sets together cover every node, at All so
	// that every replica of each answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var perr error
		for i := range 16 {
			_, perr = c.Get(ctx, []byte(fmt.Sprintf("bench-probe-%d", i)), client.WithKeyspace(name), client.WithConsistency(client.All))
			if perr != nil {
				break
			}
		}
		if perr == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: keyspace %q does not serve reads at level all: %w", name, perr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Read implements Store.
func (s *AdaptkvStore) Read(ctx context.Context, key string) error {
	res, err := s.c.Get(ctx, []byte(key), s.opts...)
	if err != nil {
		return classify(err)
	}
	if !res.Found {
		return ErrNotFound
	}
	return nil
}

// Update implements Store.
func (s *AdaptkvStore) Update(ctx context.Context, key string, value []byte) error {
	_, err := s.c.Put(ctx, []byte(key), value, s.opts...)
	return classify(err)
}

// Insert implements Store; for adaptkv it is a Put like Update.
func (s *AdaptkvStore) Insert(ctx context.Context, key string, value []byte) error {
	return s.Update(ctx, key, value)
}

// Scan implements Store: a range scan from start with a limit of n.
func (s *AdaptkvStore) Scan(ctx context.Context, start string, n int) error {
	opts := append(append([]client.CallOption(nil), s.opts...), client.WithRange([]byte(start), nil), client.WithLimit(n))
	_, err := s.c.Scan(ctx, opts...)
	return classify(err)
}

// ReadVersion implements CondStore: a Get at the store's level, whose
// version the conditional write then expects.
func (s *AdaptkvStore) ReadVersion(ctx context.Context, key string) (any, error) {
	res, err := s.c.Get(ctx, []byte(key), s.opts...)
	if err != nil {
		return nil, classify(err)
	}
	if !res.Found {
		return nil, ErrNotFound
	}
	return res.Version, nil
}

// UpdateIf implements CondStore with PutIf(IfVersion): one Paxos round,
// whatever the store's level.
func (s *AdaptkvStore) UpdateIf(ctx context.Context, key string, version any, value []byte) (any, error) {
	// No version (the key was not found) expects the key absent, as
	// etcd's compare on mod revision 0 does.
	cond := client.IfAbsent()
	if v, ok := version.(client.Version); ok && v != (client.Version{}) {
		cond = client.IfVersion(v)
	}
	res, err := s.c.PutIf(ctx, []byte(key), value, cond, s.opts[:1]...)
	switch {
	case err != nil:
		return nil, classify(err)
	case !res.Applied:
		return res.Current, ErrNotApplied
	}
	return res.Version, nil
}

var _ CondStore = (*AdaptkvStore)(nil)

// Close closes the client when the store opened it.
func (s *AdaptkvStore) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// classify tags an SDK error with a kind that names the gRPC code and the
// adaptkv reason ("unavailable/quorum_not_reached"), and marks writes whose
// outcome is unknown, which matter more than their code.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return err
	}
	kind := CodeKind(e.Code)
	if e.Reason != "" {
		kind += "/" + strings.ToLower(e.Reason)
	}
	if e.Unknown {
		kind += " (outcome unknown)"
	}
	return &KindError{Kind: kind, Err: err}
}
