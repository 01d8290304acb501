package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// singleVoter starts a one-voter Raft group over hashicorp/raft's in-memory
// stores and transport with f as its state machine, and waits until it
// leads.
func singleVoter(t *testing.T, f *fsm) *raft.Raft {
	t.Helper()
	cfg := raft.DefaultConfig()
	cfg.LocalID = "n1"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	cfg.LeaderLeaseTimeout, cfg.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
	cfg.LogLevel = "error"
	store := raft.NewInmemStore()
	addr, tr := raft.NewInmemTransport("")
	r, err := raft.NewRaft(cfg, f, store, store, raft.NewInmemSnapshotStore(), tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

// propose honours its context: a caller whose context has ended is not
// held for the proposal timeout, and a live one gets the applied result.
func TestProposeHonoursContext(t *testing.T) {
	f := newFSM()
	r := singleVoter(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	def, err := propose(ctx, r, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 1, Level: "one"}})
	if err != nil || def.Name != "ks" || def.Epoch == 0 {
		t.Fatalf("propose = %+v, %v; want the created keyspace", def, err)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	start := time.Now()
	_, err = propose(done, r, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks2", ReplicationFactor: 1, Level: "one"}})
	if took := time.Since(start); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("propose with an ended context = %v after %v; want nil or context.Canceled", err, took)
	} else if took > time.Second {
		t.Fatalf("propose with an ended context took %v", took)
	}
	// A leader that has lost its quorum cannot commit: the caller's
	// deadline, not proposeTimeout, bounds the wait.
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	start = time.Now()
	if _, err := propose(short, r, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks3", ReplicationFactor: 1, Level: "one"}}); err == nil {
		t.Fatal("propose on a stopped Raft succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("propose on a stopped Raft took %v with a 100ms deadline", took)
	}
}
