package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// sessionCluster is a 3-node cluster with the unsafe hooks and no random
// read repair, so that a replica made to miss writes stays behind.
func sessionCluster(t *testing.T) *clustertest.Cluster {
	return clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			cfg.ReadRepairChance = -1
		}
	})
}

// via is a client whose every request node i coordinates.
func via(t *testing.T, c *clustertest.Cluster, i int) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{
		Endpoints: []string{c.Node(i).Addrs().GRPC}, DisableRouting: true, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestSessionReadSkipsReplicaBehind: n3 misses the session's writes (it
// acknowledges them without storing them). A plain read at `one` that n3
// coordinates answers from its own replica, the old value; a read through
// the session, resumed on another client from its token, skips n3 and
// answers the session's write. When the only replica holding the session's
// latest write is down, the session read fails with ErrSessionBehind
// (FailedPrecondition) rather than answer older data.
func TestSessionReadSkipsReplicaBehind(t *testing.T) {
	c := sessionCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := c.Client(t)
	n3 := via(t, c, 2)
	one := client.WithConsistency(client.One)
	key := []byte("session-key")

	if _, err := all.Put(ctx, key, []byte("v1"), client.WithConsistency(client.All)); err != nil {
		t.Fatal(err)
	}
	dropWrites(t, c, 2, true)
	s := all.Session()
	if _, err := s.Put(ctx, key, []byte("v2"), client.WithConsistency(client.All)); err != nil {
		t.Fatal(err)
	}

	// Without the session, n3 answers what it holds: the test's premise.
	plain, err := n3.Get(ctx, key, one)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain.Value) != "v1" {
		t.Fatalf("plain read at one via n3 = %q; want the stale v1 (n3 should have missed v2)", plain.Value)
	}

	s3, err := n3.SessionFrom(s.Token())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		got, err := s3.Get(ctx, key, one)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Value) != "v2" {
			t.Fatalf("session read at one via n3 = %q; want the session's write v2", got.Value)
		}
	}

	// v3 reaches n1 only; with n1 down no replica in reach is new enough.
	dropWrites(t, c, 1, true)
	if _, err := s3.Put(ctx, key, []byte("v3"), one); err != nil {
		t.Fatal(err)
	}
	if err := c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	_, err = s3.Get(ctx, key, one)
	if !errors.Is(err, client.ErrSessionBehind) {
		t.Fatalf("session read with the only new replica down: err = %v; want ErrSessionBehind", err)
	}
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition {
		t.Fatalf("code = %v; want FailedPrecondition", st.Code())
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("err = %v also matches ErrUnavailable", err)
	}
	// A plain read still answers, with older data.
	if got, err := n3.Get(ctx, key, one); err != nil || string(got.Value) == "v3" {
		t.Fatalf("plain read = %v, %v; want an older value", got, err)
	}
}

// TestSessionWriteFollowsRead: n1's clock is ten seconds behind n2's. A
// session writes through n2 and then through n1: without the session's
// timestamp n1 would stamp the second write below the first, and
// last-writer-wins would keep the first (a lost update). The session's write
// carries the highest timestamp it has seen, and n1's clock moves past it.
// Fails without the coordinator observing PutRequest.session_after.
func TestSessionWriteFollowsRead(t *testing.T) {
	c := sessionCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/unsafe/clock?offset=-10s", c.Node(0).Addrs().HTTP)
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n1, n2 := via(t, c, 0), via(t, c, 1)
	q := client.WithConsistency(client.Quorum)
	for i, del := range []bool{false, true} {
		key := []byte(fmt.Sprintf("wfr-%d", i))
		s := n2.Session()
		first, err := s.Put(ctx, key, []byte("first"), q)
		if err != nil {
			t.Fatal(err)
		}
		s1, err := n1.SessionFrom(s.Token())
		if err != nil {
			t.Fatal(err)
		}
		var second *client.WriteResult
		if del {
			second, err = s1.Delete(ctx, key, q)
		} else {
			second, err = s1.Put(ctx, key, []byte("second"), q)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !first.Version.Less(second.Version) {
			t.Fatalf("second write's version %v is not after the first's %v", second.Version, first.Version)
		}
		got, err := n2.Get(ctx, key, q)
		if err != nil {
			t.Fatal(err)
		}
		if want := !del; got.Found != want || (want && string(got.Value) != "second") {
			t.Fatalf("read after the session's second write = found %v %q; want the second write", got.Found, got.Value)
		}
	}
}

// TestSessionConditionalWrites: a session's conditional writes record the
// version they wrote, or the current one a refused condition was checked
// against, so that the session's later reads, at any level and through a
// resumed token, never go back before them.
func TestSessionConditionalWrites(t *testing.T) {
	c := sessionCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := c.Client(t).Session()
	key := []byte("session-cas")
	versionOf := func(tok *client.SessionToken) client.Version {
		for _, k := range tok.Keys {
			if string(k.Key) == string(key) {
				return k.Version
			}
		}
		return client.Version{}
	}

	put, err := s.PutIf(ctx, key, []byte("v1"), client.IfAbsent())
	if err != nil || !put.Applied {
		t.Fatalf("PutIf(IfAbsent) on a new key = %+v, %v; want applied", put, err)
	}
	if got := versionOf(s.Snapshot()); got != put.Version {
		t.Fatalf("session holds %v after PutIf; want the written %v", got, put.Version)
	}
	refused, err := s.PutIf(ctx, key, []byte("v2"), client.IfAbsent())
	if err != nil || refused.Applied || refused.Current != put.Version {
		t.Fatalf("second PutIf(IfAbsent) = %+v, %v; want not applied with current %v", refused, err, put.Version)
	}
	del, err := s.DeleteIf(ctx, key, client.IfVersion(put.Version))
	if err != nil || !del.Applied {
		t.Fatalf("DeleteIf(IfVersion) = %+v, %v; want applied", del, err)
	}
	if got := versionOf(s.Snapshot()); got != del.Version {
		t.Fatalf("session holds %v after DeleteIf; want the tombstone's %v", got, del.Version)
	}
	for i := range c.Len() {
		resumed, err := via(t, c, i).SessionFrom(s.Token())
		if err != nil {
			t.Fatal(err)
		}
		got, err := resumed.Get(ctx, key, client.WithConsistency(client.One))
		if err != nil {
			t.Fatalf("session read via n%d: %v", i+1, err)
		}
		if got.Found {
			t.Fatalf("session read at one via n%d = %q; want the session's delete", i+1, got.Value)
		}
	}
}
