package node

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Limits of the fuzzed node, small so that the fuzzer reaches them.
const (
	fuzzMaxKey   = 16
	fuzzMaxValue = 64
	fuzzMaxScan  = 50
)

// startFuzzNode starts a one-node in-memory cluster and waits until it
// serves the default keyspace (N=1).
func startFuzzNode(f *testing.F) *Node {
	cfg := DefaultLocalConfig()
	cfg.ID = "fuzz"
	cfg.InMemory = true
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.BootstrapExpect = 1
	cfg.MaxKeySize, cfg.MaxValueSize, cfg.MaxScanLimit, cfg.DefaultScanLimit = fuzzMaxKey, fuzzMaxValue, fuzzMaxScan, 10
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Stop(context.Background()) })
	for n.Ready() != nil {
		if ctx.Err() != nil {
			f.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// validName is the keyspace name rule, written out without the regexp the
// server uses: 1-64 bytes, a letter first, then letters, digits, _ or -.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter || !letter && !(c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validConsistency is the rule for a request's consistency: a known level;
// R and W only with LEVEL_CUSTOM, which needs both, and at most N (the
// default keyspace has N=1; other keyspaces do not exist).
func validConsistency(c *kvpb.Consistency, keyspace string, scan bool) bool {
	switch c.GetLevel() {
	case kvpb.Level_LEVEL_UNSPECIFIED:
		return c.GetR() == 0 && c.GetW() == 0
	case kvpb.Level_LEVEL_ONE, kvpb.Level_LEVEL_QUORUM, kvpb.Level_LEVEL_ALL:
		return true
	case kvpb.Level_LEVEL_LINEARIZABLE:
		return !scan // a scan is not linearizable, and says so
	case kvpb.Level_LEVEL_CUSTOM:
		if c.GetR() == 0 || c.GetW() == 0 {
			return false
		}
		return keyspace != DefaultKeyspace || (c.GetR() <= 1 && c.GetW() <= 1)
	}
	return false
}

// validScan is the rule for a scan's range: a prefix or an end, not both;
// a start inside the prefix; bounds no longer than a key and one byte; a
// non-empty range; a limit within the maximum.
func validScan(req *kvpb.ScanRequest) bool {
	p, from, to := req.GetPrefix(), req.GetStart(), req.GetEnd()
	if len(p) > 0 {
		if len(to) > 0 || len(from) > 0 && !bytes.HasPrefix(from, p) {
			return false
		}
		if len(from) == 0 {
			from = p
		}
		to = nil
		for i := len(p) - 1; i >= 0; i-- { // the first key after the prefix
			if p[i] != 0xff {
				to = append(bytes.Clone(p[:i]), p[i]+1)
				break
			}
		}
	}
	for _, b := range [][]byte{p, from, to} {
		if len(b) > fuzzMaxKey+1 {
			return false
		}
	}
	return (len(to) == 0 || bytes.Compare(from, to) < 0) && req.GetLimit() <= fuzzMaxScan
}

// FuzzKVRequest sends arbitrary client requests to a real node's handlers.
// A request is refused with InvalidArgument exactly when it breaks the API's
// rules (keyspace name, key and value sizes, consistency, scan range and
// limit); any other request is served, or fails only because its keyspace
// does not exist or its deadline passed. A value put at the default keyspace
// reads back.
func FuzzKVRequest(f *testing.F) {
	n := startFuzzNode(f)
	kv := kvServer{n: n}
	f.Add(uint8(0), "default", []byte("k"), []byte("v"), uint8(0), uint32(0), uint32(0), []byte(nil), []byte(nil), uint32(0))
	f.Add(uint8(1), "default", []byte("k"), []byte(nil), uint8(4), uint32(1), uint32(1), []byte(nil), []byte(nil), uint32(0))
	f.Add(uint8(2), "default", bytes.Repeat([]byte("k"), fuzzMaxKey+1), []byte(nil), uint8(3), uint32(2), uint32(0), []byte(nil), []byte(nil), uint32(0))
	f.Add(uint8(3), "default", []byte("a"), []byte("a\xff"), uint8(0), uint32(0), uint32(0), []byte("a\xff\x00"), []byte(nil), uint32(5))
	f.Add(uint8(3), "default", []byte(nil), []byte(nil), uint8(2), uint32(0), uint32(0), []byte("\xff\xff"), []byte("b"), uint32(fuzzMaxScan+1))
	f.Add(uint8(0), "9bad", []byte("k"), bytes.Repeat([]byte("v"), fuzzMaxValue+1), uint8(7), uint32(0), uint32(1), []byte(nil), []byte(nil), uint32(0))
	f.Fuzz(func(t *testing.T, op uint8, keyspace string, key, value []byte, level uint8, r, w uint32, bound1, bound2 []byte, limit uint32) {
		cons := &kvpb.Consistency{Level: kvpb.Level(level % 6), R: r, W: w}
		if level >= 6 {
			cons = nil
		}
		// A real name that does not exist costs a wait for the metadata
		// log; keep it short.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		var (
			err   error
			valid bool
			what  string
		)
		keyOK := len(key) >= 1 && len(key) <= fuzzMaxKey
		switch op % 4 {
		case 0:
			what = "put"
			valid = validName(keyspace) && keyOK && len(value) <= fuzzMaxValue && validConsistency(cons, keyspace, false)
			_, err = kv.Put(ctx, &kvpb.PutRequest{Keyspace: keyspace, Key: key, Value: value, Consistency: cons})
			if err == nil {
				rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer rcancel()
				g, gerr := kv.Get(rctx, &kvpb.GetRequest{Keyspace: keyspace, Key: key, Consistency: cons})
				if gerr != nil || !g.GetFound() || !bytes.Equal(g.GetValue(), value) {
					t.Fatalf("put %q=%q in %q then get = %v, %v", key, value, keyspace, g, gerr)
				}
			}
		case 1:
			what = "get"
			valid = validName(keyspace) && keyOK && validConsistency(cons, keyspace, false)
			_, err = kv.Get(ctx, &kvpb.GetRequest{Keyspace: keyspace, Key: key, Consistency: cons})
		case 2:
			what = "delete"
			valid = validName(keyspace) && keyOK && validConsistency(cons, keyspace, false)
			_, err = kv.Delete(ctx, &kvpb.DeleteRequest{Keyspace: keyspace, Key: key, Consistency: cons})
		case 3:
			what = "scan"
			req := &kvpb.ScanRequest{Keyspace: keyspace, Prefix: key, Start: bound1, End: bound2, Limit: limit, Consistency: cons}
			valid = validName(keyspace) && validScan(req) && validConsistency(cons, keyspace, true)
			_, err = kv.Scan(ctx, req)
		}
		code := status.Code(err)
		switch {
		case !valid && code != codes.InvalidArgument:
			t.Fatalf("%s in %q (key %q, value %d bytes, consistency %v, bounds %q %q, limit %d) breaks the rules but got %v",
				what, keyspace, key, len(value), cons, bound1, bound2, limit, err)
		case valid && code == codes.InvalidArgument:
			t.Fatalf("%s in %q (key %q, value %d bytes, consistency %v, bounds %q %q, limit %d) keeps the rules but was refused: %v",
				what, keyspace, key, len(value), cons, bound1, bound2, limit, err)
		case valid && code != codes.OK && code != codes.NotFound && ctx.Err() == nil:
			t.Fatalf("%s in %q (key %q, consistency %v) failed with %v", what, keyspace, key, cons, err)
		case code == codes.NotFound && keyspace == DefaultKeyspace:
			t.Fatalf("%s: the default keyspace was not found: %v", what, err)
		}
	})
}
