package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/adaptkv/adaptkv/node/membership"
)

// Node numbers.
//
// A version is a hybrid-clock timestamp and the number of the node that
// stamped it; last writer wins compares the timestamp, then the number. Two
// nodes with the same number could stamp equal versions with different
// values, and replicas that hold one or the other would never converge. A
// hash of the node ID (what the numbers were before) collides for about
// one pair in 65,000 nodes' worth of IDs, and nothing detected it. So the
// metadata log assigns the numbers: a "number" entry gives a member the
// next number never given before, once; the leader proposes one for every
// member it sees without one (reconcile). A node coordinates no write until
// it knows its number, and keeps it in its data directory so that a
// restart, even one cut off from the metadata leader, stamps versions at
// once.

// ErrNoNodeNumber: the node has not been assigned its number yet.
var ErrNoNodeNumber = errors.New("node: no node number assigned yet")

// nodeNumberFile is where a node keeps its number in its data directory.
const nodeNumberFile = "node-number"

// assignNumber returns id's number, assigning the next one if it has none.
// Called under f.mu, from Apply.
func (f *fsm) assignNumber(id string) uint32 {
	cur := *f.numbers.Load()
	if n, ok := cur[id]; ok {
		return n
	}
	var top uint32
	for _, n := range cur {
		top = max(top, n)
	}
	next := make(map[string]uint32, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[id] = top + 1
	f.numbers.Store(&next)
	return top + 1
}

// Number returns the number the metadata log assigned to node id.
func (f *fsm) Number(id string) (uint32, bool) {
	n, ok := (*f.numbers.Load())[id]
	return n, ok
}

// nodeNumber is the coordinator's source of this node's number: the one
// the metadata log assigned, or, before this node has applied it since a
// restart, the one it kept on disk.
//
// The log wins over the file: a file left from a cluster whose metadata
// log was rebuilt could hold a number the new log gives another node.
func (n *Node) nodeNumber() (uint32, error) {
	num, ok := n.meta.Number(n.cfg.ID)
	kept := n.number.Load()
	switch {
	case ok && num == kept:
		return num, nil
	case !ok && kept != 0:
		return kept, nil
	case !ok:
		return 0, fmt.Errorf("%w: node %s waits for the metadata leader to assign it one before it stamps writes", ErrNoNodeNumber, n.cfg.ID)
	}
	n.numberMu.Lock() // one writer of the file at a time
	defer n.numberMu.Unlock()
	if n.number.Load() == num {
		return num, nil
	}
	if kept != 0 {
		n.log.Warn("node number kept on disk differs from the metadata log's; using the log's", "kept", kept, "log", num)
	}
	if err := n.keepNumber(num); err != nil {
		n.log.Warn("node number not kept on disk", "number", num, "err", err)
	}
	n.number.Store(num)
	return num, nil
}

// loadNumber reads the number kept in the data directory, if any.
func (n *Node) loadNumber() error {
	if n.cfg.InMemory {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, nodeNumberFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read node number: %w", err)
	case len(b) != 4 || binary.BigEndian.Uint32(b) == 0:
		return fmt.Errorf("node number file %s is corrupt (%d bytes)", filepath.Join(n.cfg.DataDir, nodeNumberFile), len(b))
	}
	n.number.Store(binary.BigEndian.Uint32(b))
	return nil
}

// keepNumber writes num to the data directory, durably, before it is used.
func (n *Node) keepNumber(num uint32) error {
	if n.cfg.InMemory {
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, nodeNumberFile)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], num)
	if _, err := f.Write(b[:]); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(n.cfg.DataDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// assignNumbers, on the metadata leader, gives every member that has none
// a number.
func (n *Node) assignNumbers(ctx context.Context) error {
	for _, m := range n.members.View().Members {
		if m.State == membership.Left {
			continue
		}
		if _, ok := n.meta.Number(m.ID); ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := propose(pctx, n.raft, command{Op: "number", Node: m.ID, AtUnixMs: time.Now().UnixMilli()})
		cancel()
		if err != nil {
			return fmt.Errorf("assign a number to %s: %w", m.ID, err)
		}
		num, _ := n.meta.Number(m.ID)
		n.log.Info("node number assigned", "member", m.ID, "number", num)
	}
	return nil
}

// memberNumber is a member's number as the metadata log assigned it; 0
// when it has none yet.
func (n *Node) memberNumber(id string) uint32 {
	num, _ := n.meta.Number(id)
	return num
}
