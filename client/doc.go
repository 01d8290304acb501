// Package client is the Go SDK of adaptkv, a replicated key-value store.
//
// Create one Client per process with New and share it: it keeps long-lived
// gRPC connections to the nodes and learns the cluster's topology in the
// background. Any node can serve any request, so the client works with a
// single reachable endpoint; with routing enabled (the default) it sends each
// key's requests straight to one of that key's replicas, which saves the
// receiving node a network hop.
//
//	c, err := client.New(ctx, client.Config{Endpoints: []string{"10.0.0.1:7400"}})
//	...
//	defer c.Close()
//	res, err := c.Put(ctx, []byte("k"), []byte("v"), client.WithConsistency(client.Quorum))
//
// Connections are not encrypted yet (insecure gRPC credentials); TLS will be
// added as a Config field.
//
// # Consistency levels
//
// A keyspace stores every key on N replicas (its replication factor). A read
// waits for R replicas to answer and returns the newest version among them; a
// write waits for W acknowledgements. The level picks R and W:
//
//   - One: R = W = 1. Lowest latency and highest availability, but a read
//     may miss a recent write.
//   - Quorum: R = W = N/2+1. Every read overlaps every acknowledged write,
//     and a minority of replicas may be down.
//   - All: R = W = N. Any replica down fails the request.
//   - WithRW(r, w) (Custom): explicit values; r + w > N gives reads that see
//     every acknowledged write.
//   - Linearizable: every read and write of the key is linearizable,
//     whatever the clocks say: writes go through single-decree Paxos on the
//     key's replicas, reads ask a majority. PutIf and DeleteIf (conditional
//     writes: IfVersion, IfAbsent, IfValue) always run at this level.
//     Plain writes at other levels on the same key are not ordered by
//     Paxos; mixing them gives their guarantees, not linearizability.
//   - LevelDefault (no option): the keyspace's default, set with
//     CreateKeyspace or AlterKeyspace.
//
// The server never weakens a level: when it cannot be met the call fails.
//
// # Receipts
//
// Every successful data call returns a Receipt saying what it achieved: the
// level used, N, the replicas required and how many acknowledged or answered,
// how many stale replicas a read repaired, the coordinating node and the
// configuration epoch. The client checks that Acked is at least Required and
// refuses a result that is not (ReasonReceiptViolation), so a receipt in hand
// is the guarantee that was asked for.
//
// # Errors: definite failures and unknown outcomes
//
// Every error from a Client method is an *Error; use errors.Is with the
// sentinels, or errors.As for the details (code, reason, acked and required
// replicas). A failed call is one of two very different things:
//
//   - A definite failure: nothing was changed. ErrInvalidArgument,
//     ErrKeyspaceNotFound, ErrKeyspaceExists, ErrNoLeader, and
//     ErrUnavailable with reason NOT_ENOUGH_REPLICAS (too few replicas
//     alive, so nothing was sent) or with no reason when the request never
//     left the client. Every failed read is definite: reads change nothing.
//
//   - An unknown outcome (ErrUnknownOutcome), for writes only: the request
//     was sent and the client cannot tell whether it took effect. Typical
//     causes are QUORUM_NOT_REACHED (replicas were asked but fewer than W
//     acknowledged in time; some may have stored the value), a deadline
//     (ErrTimeout) or a connection lost after sending. Such a write may be
//     on some replicas, may become visible later through read repair and
//     hinted handoff, and may win over writes made after it if its version
//     is newer. Do not treat it as "not written". To resolve it, read the
//     key at Quorum (a version at or after the one you expected tells you
//     the write or a later one landed), or repeat the write if writing the
//     same value again is acceptable: the repeat gets a new version that
//     supersedes the first whether or not it landed, at the risk of
//     overwriting a concurrent writer in between.
//
// An error can match several sentinels: a write that failed with
// QUORUM_NOT_REACHED is both ErrUnavailable and ErrUnknownOutcome; a write
// that timed out after sending is ErrTimeout and ErrUnknownOutcome. The
// caller's own context errors also match context.DeadlineExceeded and
// context.Canceled.
//
// # Retries
//
// The client retries only where it cannot change the outcome, up to
// Config.MaxRetries times with jittered exponential backoff, moving to the
// next node each time, and never past the context's deadline (the last error
// is returned rather than waiting into the deadline):
//
//   - Reads (Get, Scan, DescribeKeyspace, ListKeyspaces, ClusterStatus,
//     LocalGet) retry on ErrUnavailable, on a server-side deadline and on
//     connection failures.
//   - Writes (Put, Delete, CreateKeyspace, AlterKeyspace) retry only after a
//     definite failure that wrote nothing: NOT_ENOUGH_REPLICAS,
//     METADATA_NOT_READY, OVERLOADED, NO_METADATA_LEADER, CONTENDED
//     (ErrContended: PutIf, DeleteIf or a Linearizable write lost its Paxos
//     rounds to concurrent writers of the key, writing nothing), or a connection
//     that failed before the request was sent. Before sending a write the client skips nodes whose connection is
//     failing, so that a dead node costs no uncertainty. A write with an
//     unknown outcome is never retried automatically; that is the caller's
//     decision.
//   - InvalidArgument, NotFound and AlreadyExists are never retried.
//   - OVERLOADED (ErrOverloaded: the node had its maximum of requests in
//     flight and refused this one at once) is retried, read or write, after
//     at least the node's retry-after hint (Error.RetryAfter), jittered up
//     by half of it, or the ordinary backoff if longer. Such retries draw on
//     a budget shared by the Client, as in gRPC's retry throttling: each
//     refusal costs a token, each success returns a tenth of one, and a
//     refusal is retried only while more than half of the ten tokens are
//     left. A burst is ridden out; under sustained overload the retries
//     stop at about one per ten successes instead of multiplying the load
//     the cluster is shedding.
//   - Client-side throttling (Google SRE, "Handling Overload"): for each
//     node the client counts, over the last seconds, the requests it sent
//     and those the node accepted, and refuses a request locally, unsent,
//     with probability max(0, (requests − 2·accepts)/(requests + 1)),
//     returning ErrOverloaded. A node refusing most of its load is spared
//     most of the refusals; a node that accepts everything is never
//     throttled.
//   - Concurrency windows: for each node the client keeps a window of data
//     calls (Get, Put, Delete, Scan, PutIf, DeleteIf) it lets be in flight
//     there, adapted like TCP's congestion window (AIMD): it starts at 32
//     (the nodes' default --max-inflight), grows by one call per window's
//     worth of successes up to Config.MaxInflightPerNode (default 256),
//     lowered to the bound a node states in its first OVERLOADED refusal,
//     and halves (at most once per window's worth, not below one) on a
//     refusal. A call refused because the window was larger than the node
//     admits waits for the smaller window instead of failing (nothing was
//     done); other refusals take the retry path above. Calls past the
//     window wait in the client in FIFO order: a closed loop of many
//     goroutines on one Client sees its latency grow with their number,
//     not ErrOverloaded. A call whose context ends while it waits fails
//     with the context's error (ErrTimeout and context.DeadlineExceeded, or
//     context.Canceled), definite even for a write, since nothing was
//     sent. Past Config.MaxQueuedPerNode waiting calls (default 256 per
//     node) a call is refused at once, unsent, with ErrOverloaded, counted
//     like a node's refusal by the retry budget and the throttle, so that
//     an open loop still sheds and the client's memory stays bounded. A
//     call with room in the window and no one waiting goes at once.
//
// # Routing
//
// The client reads the members and the number of virtual nodes from
// ClusterStatus and the replication factors from ListKeyspaces, every
// Config.TopologyRefresh and soon after a connection error. It builds the
// same consistent-hash ring as the servers (package api/ring, shared with
// them) and
// sends Get, Put and Delete to an alive replica of the key, ranked by the
// client's latency score of each node: a moving average of its response
// times, where a timeout or Unavailable counts as at least 250 ms, times one
// plus the requests in flight there, decaying so that a node avoided for
// being slow is retried. Nodes within a tolerance band of the best are
// equals: reads rotate over them, writes go to the first in preference order
// whose connection is not failing; slower nodes follow, and nodes the cluster
// flagged as gray failures go last. Gets and Scans are hedged (see
// Config.DisableHedging; Client.RoutingStats shows the scores). When the
// topology or keyspace is not known yet, or no replica is reachable, any node
// serves the request. Scan and the admin calls go to any node, keyspace
// changes preferably to the metadata leader. Set Config.DisableRouting when
// the nodes' own addresses are not reachable from the client.
//
// # Contract
//
// This package is the whole public SDK: Client and Config, the call
// options, the results, Error and its sentinels, retries, throttling and
// routing. Of adaptkv it imports only package api and its sub-packages (the
// generated protocol, and what routing needs to place keys), never the
// server (node, replication, storage, tuner), so that an application that
// imports the SDK builds none of the server; kvpb types never appear in its
// exported API.
//
// The names it shares with the server are declared in package api: Level is
// api.Level, and the Reason constants are api's (plus ReasonReceiptViolation,
// the client's own). Every reason a server sends is classified in one table
// (definite or not, which sentinel it matches), and a test fails when api
// declares a reason that table lacks.
//
// A Client is safe for concurrent use. Unless Config.DisableRouting is set
// it runs one background goroutine, the topology refresher; Close is
// idempotent, stops it and waits for it. Calls run on the caller's
// goroutine (a topology refresh asks several nodes at once and waits for
// them), and so does RepairKeyspace's progress callback. Results belong to
// the caller.
//
// # Testing your code
//
// Package node/clustertest (github.com/adaptkv/adaptkv/node/clustertest)
// starts a real in-process cluster for your own tests, each node on loopback
// ports of its own: c := clustertest.New(t, 3); kv := c.Client(t). It
// imports the server, which is why it is not part of this package. The
// benchmark tool (`adaptkv bench`) lives in the top-level package bench.
package client
