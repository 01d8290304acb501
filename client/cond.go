package client

import (
	"context"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Condition is what PutIf and DeleteIf require of the key's current record
// before they write. Make one with IfVersion, IfAbsent or IfValue.
type Condition struct {
	kind    kvpb.Condition_Kind
	version Version
	value   []byte
}

// IfVersion holds when the key's current version is v: the key exists (a
// deleted key has no version to match) and nobody wrote it since the read
// that returned v. The zero Version matches nothing (the server refuses it);
// use IfAbsent for a key that must not exist.
func IfVersion(v Version) Condition {
	return Condition{kind: kvpb.Condition_IF_VERSION, version: v}
}

// IfAbsent holds when the key does not exist: never written, or deleted.
func IfAbsent() Condition { return Condition{kind: kvpb.Condition_IF_ABSENT} }

// IfValue holds when the key exists and its value is b, byte for byte.
func IfValue(b []byte) Condition {
	return Condition{kind: kvpb.Condition_IF_VALUE, value: b}
}

func (c Condition) toPB() *kvpb.Condition {
	pb := &kvpb.Condition{Kind: c.kind}
	switch c.kind {
	case kvpb.Condition_IF_VERSION:
		pb.Version = &kvpb.Version{Timestamp: c.version.Timestamp, Node: c.version.Node}
	case kvpb.Condition_IF_VALUE:
		pb.Value = c.value
	}
	return pb
}

// CondResult is the answer to PutIf or DeleteIf.
type CondResult struct {
	// Applied says the condition held and the write took effect.
	Applied bool
	// Version is, when Applied, the version written.
	Version Version
	// Found, Value and Current are, when not Applied, the key's record the
	// condition was checked against: Found false when it did not exist.
	Found   bool
	Value   []byte
	Current Version
	Receipt Receipt
}

// PutIf stores value under key if cond holds on the key's current record,
// atomically: through single-decree Paxos on the key's replicas, at the
// Linearizable level (WithConsistency may only ask for Linearizable or the
// default; any other level is refused with ErrInvalidArgument). When the
// condition does not hold nothing is written, and the result carries the
// current record. Options: WithKeyspace, WithConsistency.
//
// Errors: ErrContended (nothing written) is retried with backoff, and
// returned when the retries ran out. ErrUnknownOutcome is never retried: the
// write's proposal went out and a later round may still apply it, so
// sending it again could apply it twice; read the key (at Linearizable) and
// decide. A PutIf is linearizable with every other PutIf, DeleteIf and
// Linearizable operation on the key; plain writes at weaker levels on the
// same key are not ordered by Paxos (see the README).
func (c *Client) PutIf(ctx context.Context, key, value []byte, cond Condition, opts ...CallOption) (*CondResult, error) {
	const op = "put_if"
	o, e := buildOptions(op, false, opts)
	if e != nil {
		return nil, e
	}
	resp, err := c.sendPut(ctx, op, &o, &kvpb.PutRequest{Keyspace: o.keyspace, Key: key, Value: value, Consistency: o.consistency(), Condition: cond.toPB()})
	if err != nil {
		return nil, err
	}
	return o.condResult(op, key, resp.GetApplied(), resp.GetVersion(), resp.GetCurrent(), resp.GetReceipt())
}

// DeleteIf deletes key (writes a tombstone) if cond holds on the key's
// current record, atomically; options, results and errors are as for PutIf.
func (c *Client) DeleteIf(ctx context.Context, key []byte, cond Condition, opts ...CallOption) (*CondResult, error) {
	const op = "delete_if"
	o, e := buildOptions(op, false, opts)
	if e != nil {
		return nil, e
	}
	resp, err := c.sendDelete(ctx, op, &o, &kvpb.DeleteRequest{Keyspace: o.keyspace, Key: key, Consistency: o.consistency(), Condition: cond.toPB()})
	if err != nil {
		return nil, err
	}
	return o.condResult(op, key, resp.GetApplied(), resp.GetVersion(), resp.GetCurrent(), resp.GetReceipt())
}

func (o *callOptions) condResult(op string, key []byte, applied bool, v *kvpb.Version, cur *kvpb.Current, r *kvpb.Receipt) (*CondResult, error) {
	res := &CondResult{Applied: applied, Receipt: receiptFromPB(r)}
	if applied {
		res.Version = versionFromPB(v)
	} else {
		res.Found, res.Value, res.Current = cur.GetFound(), cur.GetValue(), versionFromPB(cur.GetVersion())
	}
	if err := checkReceipt(op, opWrite, res.Receipt); err != nil {
		return nil, err
	}
	if o.session != nil {
		if applied {
			o.session.observe(o.keyspace, key, res.Version)
		} else {
			o.session.observe(o.keyspace, key, res.Current)
		}
	}
	return res, nil
}
