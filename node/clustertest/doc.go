// Package clustertest starts a real adaptkv cluster inside the calling
// process, for users' own tests and for adaptkv's: every node runs its real
// storage engine, gossip, metadata log and gRPC services on loopback ports
// of its own (port 0), so tests can run in parallel.
//
//	func TestMyService(t *testing.T) {
//		c := clustertest.New(t, 3)        // stopped by t.Cleanup
//		kv := c.Client(t)
//		_, err := kv.Put(ctx, []byte("k"), []byte("v"))
//		...
//	}
//
// # What it owns and may import
//
// It owns the in-process nodes it starts (node.Start) and their data
// directories, and hands out SDK clients connected to them. It imports node
// and client; it lives under node, not client, because the SDK must not
// import the server (`go list -deps ./client` shows only api packages). To
// run nodes as separate processes of the real binary use node/launch instead.
//
// # Concurrency
//
// StopNode, StopNodeNow, RestartNode and Close may be called from several
// goroutines: the node list is guarded by a mutex. A stop returns once the
// node's goroutines have ended (its tests, and node's, check that with
// goleak); Close, run by t.Cleanup for New, stops every node still running.
package clustertest
