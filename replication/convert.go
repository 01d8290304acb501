package replication

import (
	"fmt"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/storage"
)

// RecordToPB converts a stored record to its wire form. The byte slices are
// shared, not copied.
func RecordToPB(r storage.Record) *kvpb.Record {
	return &kvpb.Record{
		Key:       r.Key,
		Value:     r.Value,
		Version:   VersionToPB(r.Version),
		Tombstone: r.Tombstone,
	}
}

// RecordFromPB converts a wire record; a nil record is the zero Record.
func RecordFromPB(r *kvpb.Record) storage.Record {
	if r == nil {
		return storage.Record{}
	}
	return storage.Record{
		Key:       r.GetKey(),
		Value:     r.GetValue(),
		Version:   VersionFromPB(r.GetVersion()),
		Tombstone: r.GetTombstone(),
	}
}

// VersionToPB converts a version to its wire form.
func VersionToPB(v storage.Version) *kvpb.Version {
	return &kvpb.Version{Timestamp: v.Timestamp, Node: v.Node}
}

// VersionFromPB converts a wire version; nil is the zero version.
func VersionFromPB(v *kvpb.Version) storage.Version {
	return storage.Version{Timestamp: v.GetTimestamp(), Node: v.GetNode()}
}

// BallotToPB converts a Paxos ballot to its wire form.
func BallotToPB(b paxos.Ballot) *kvpb.PaxosBallot {
	return &kvpb.PaxosBallot{Counter: b.Counter, Node: b.Node}
}

// BallotFromPB converts a wire ballot; nil is the zero ballot.
func BallotFromPB(b *kvpb.PaxosBallot) paxos.Ballot {
	return paxos.Ballot{Counter: b.GetCounter(), Node: b.GetNode()}
}

// ProposalToPB converts a Paxos proposal to its wire form.
func ProposalToPB(p paxos.Proposal) *kvpb.PaxosProposal {
	out := &kvpb.PaxosProposal{Ballot: BallotToPB(p.Ballot), Noop: p.Noop}
	if !p.Noop {
		out.Record = RecordToPB(p.Record)
	}
	return out
}

// ProposalFromPB converts a wire proposal for key. A proposal that writes
// must carry a record of that key: a replica stores it as the key's.
func ProposalFromPB(p *kvpb.PaxosProposal, key []byte) (paxos.Proposal, error) {
	out := paxos.Proposal{Ballot: BallotFromPB(p.GetBallot()), Noop: p.GetNoop()}
	if out.Ballot.IsZero() {
		return paxos.Proposal{}, fmt.Errorf("%w: paxos proposal without a ballot", ErrInvalidRequest)
	}
	if out.Noop {
		return out, nil
	}
	out.Record = RecordFromPB(p.GetRecord())
	if string(out.Record.Key) != string(key) {
		return paxos.Proposal{}, fmt.Errorf("%w: paxos proposal for key %q carries a record of %q", ErrInvalidRequest, key, out.Record.Key)
	}
	return out, nil
}

// PromiseFromPB reads an acceptor's answer to a prepare or a read: its
// promise and the key's record it sent with it.
func PromiseFromPB(r *kvpb.PaxosResponse) (p paxos.Promise, rec storage.Record, found bool) {
	p = paxos.Promise{OK: r.GetOk(), Promised: BallotFromPB(r.GetPromised()), Committed: BallotFromPB(r.GetCommitted())}
	if a := r.GetAccepted(); a != nil {
		p.Accepted = paxos.Proposal{Ballot: BallotFromPB(a.GetBallot()), Noop: a.GetNoop()}
		if !p.Accepted.Noop {
			p.Accepted.Record = RecordFromPB(a.GetRecord())
		}
	}
	if r.GetFound() {
		rec, found = RecordFromPB(r.GetRecord()), true
	}
	return p, rec, found
}
