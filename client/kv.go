package client

import (
	"context"
	"sync/atomic"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Get reads key. A key that does not exist is not an error: the result has
// Found == false. Options: WithKeyspace, WithConsistency, WithRW (R is used).
// Get is retried on another replica after failures that other nodes or a
// moment may cure.
func (c *Client) Get(ctx context.Context, key []byte, opts ...CallOption) (*GetResult, error) {
	const op = "get"
	o, e := buildOptions(op, false, opts)
	if e != nil {
		return nil, e
	}
	req := &kvpb.GetRequest{Keyspace: o.keyspace, Key: key, Consistency: o.consistency()}
	if o.session != nil {
		req.SessionMin = o.session.minFor(o.keyspace, key)
	}
	// A hedged read runs the call twice at once: the first answer is kept.
	var first atomic.Pointer[kvpb.GetResponse]
	pick := c.pickFrom(op, func() []string { return c.keyNodes(opRead, o.keyspace, key) })
	err := c.invoke(ctx, opRead, op, pick, func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		r, err := c.callGet(ctx, cc, req, co...)
		if err == nil {
			first.CompareAndSwap(nil, r)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := first.Load()
	res := &GetResult{Found: resp.GetFound(), Receipt: receiptFromPB(resp.GetReceipt())}
	if res.Found {
		res.Value = resp.GetValue()
		res.Version = versionFromPB(resp.GetVersion())
	}
	if err := checkReceipt(op, opRead, res.Receipt); err != nil {
		return nil, err
	}
	if o.session != nil {
		// A tombstone's version too: the session has seen the delete.
		o.session.observe(o.keyspace, key, versionFromPB(resp.GetVersion()))
	}
	return res, nil
}

// Put stores value under key. Options: WithKeyspace, WithConsistency, WithRW
// (W is used). It is retried only when nothing can have been written; check
// errors for ErrUnknownOutcome (see the package documentation).
func (c *Client) Put(ctx context.Context, key, value []byte, opts ...CallOption) (*WriteResult, error) {
	const op = "put"
	o, e := buildOptions(op, false, opts)
	if e != nil {
		return nil, e
	}
	resp, err := c.sendPut(ctx, op, &o, &kvpb.PutRequest{Keyspace: o.keyspace, Key: key, Value: value, Consistency: o.consistency()})
	if err != nil {
		return nil, err
	}
	res := &WriteResult{Version: versionFromPB(resp.GetVersion()), Receipt: receiptFromPB(resp.GetReceipt())}
	if err := checkReceipt(op, opWrite, res.Receipt); err != nil {
		return nil, err
	}
	if o.session != nil {
		o.session.observe(o.keyspace, key, res.Version)
	}
	return res, nil
}

// Delete removes key by writing a tombstone; deleting a missing key
// succeeds. Options and retries are as for Put.
func (c *Client) Delete(ctx context.Context, key []byte, opts ...CallOption) (*WriteResult, error) {
	const op = "delete"
	o, e := buildOptions(op, false, opts)
	if e != nil {
		return nil, e
	}
	resp, err := c.sendDelete(ctx, op, &o, &kvpb.DeleteRequest{Keyspace: o.keyspace, Key: key, Consistency: o.consistency()})
	if err != nil {
		return nil, err
	}
	res := &WriteResult{Version: versionFromPB(resp.GetVersion()), Receipt: receiptFromPB(resp.GetReceipt())}
	if err := checkReceipt(op, opWrite, res.Receipt); err != nil {
		return nil, err
	}
	if o.session != nil {
		o.session.observe(o.keyspace, key, res.Version)
	}
	return res, nil
}

// Scan reads keys in order: all of them, those with a prefix (WithPrefix) or
// those in a range (WithRange), at most WithLimit of them. Options also:
// WithKeyspace, WithConsistency, WithRW (R is used). When More is set,
// continue with WithRange(res.NextStart, end). Scan goes to any node and is
// retried like Get.
func (c *Client) Scan(ctx context.Context, opts ...CallOption) (*ScanResult, error) {
	const op = "scan"
	o, e := buildOptions(op, true, opts)
	if e != nil {
		return nil, e
	}
	req := &kvpb.ScanRequest{
		Keyspace:    o.keyspace,
		Prefix:      o.prefix,
		Start:       o.start,
		End:         o.end,
		Limit:       uint32(o.limit),
		Consistency: o.consistency(),
	}
	var first atomic.Pointer[kvpb.ScanResponse] // as in Get
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		r, err := c.callScan(ctx, cc, req, co...)
		if err == nil {
			first.CompareAndSwap(nil, r)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := first.Load()
	res := &ScanResult{
		Items:     make([]KeyValue, 0, len(resp.GetItems())),
		More:      resp.GetMore(),
		NextStart: resp.GetNextStart(),
		Receipt:   receiptFromPB(resp.GetReceipt()),
	}
	for _, kv := range resp.GetItems() {
		res.Items = append(res.Items, KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), Version: versionFromPB(kv.GetVersion())})
	}
	if err := checkReceipt(op, opRead, res.Receipt); err != nil {
		return nil, err
	}
	return res, nil
}

// checkReceipt refuses a success whose receipt shows fewer replicas than it
// required: passing it on would hand the caller a weaker guarantee than it
// asked for without saying so. Only a server bug can cause it.
func checkReceipt(op string, kind opKind, r Receipt) error {
	if r.Acked >= r.Required {
		return nil
	}
	e := localError(op, codes.Internal, ReasonReceiptViolation,
		"server reported success with %d of %d required replicas (coordinator %s)", r.Acked, r.Required, r.Coordinator)
	e.Acked, e.Required = r.Acked, r.Required
	// The write reached some replicas; whether it holds is unknown.
	e.Unknown = kind == opWrite
	return e
}

// sendPut sends a Put or a PutIf (req) to the key's nodes, with the
// session's timestamp when o has a session, retried as writes are.
func (c *Client) sendPut(ctx context.Context, op string, o *callOptions, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	if o.session != nil {
		req.SessionAfter = o.session.after()
	}
	var resp *kvpb.PutResponse
	pick := c.pickFrom(op, c.writeNodes(o, req.GetKey(), req.GetCondition() != nil))
	err := c.invoke(ctx, opWrite, op, pick, func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = c.callPut(ctx, cc, req, co...)
		return err
	})
	return resp, err
}

// writeNodes lists the coordinators for a write of key: ranked, as any
// write, unless it goes through Paxos (a condition, or the Linearizable
// level asked for by name), which goes to the key's first live replica
// (paxosNodes).
func (c *Client) writeNodes(o *callOptions, key []byte, conditional bool) func() []string {
	if conditional || o.level == Linearizable {
		return func() []string { return c.paxosNodes(o.keyspace, key) }
	}
	return func() []string { return c.keyNodes(opWrite, o.keyspace, key) }
}

// sendDelete is sendPut for a Delete or a DeleteIf.
func (c *Client) sendDelete(ctx context.Context, op string, o *callOptions, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	if o.session != nil {
		req.SessionAfter = o.session.after()
	}
	var resp *kvpb.DeleteResponse
	pick := c.pickFrom(op, c.writeNodes(o, req.GetKey(), req.GetCondition() != nil))
	err := c.invoke(ctx, opWrite, op, pick, func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = c.callDelete(ctx, cc, req, co...)
		return err
	})
	return resp, err
}
