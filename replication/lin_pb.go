package replication

import (
	"context"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
)

// TEMPORARY until the acceptor side is merged.

type paxosTransporter interface {
	Paxos(ctx context.Context, to string, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error)
}

func (c *Coordinator) paxosTransport() paxosTransporter { return c.cfg.Transport.(paxosTransporter) }

func paxosBallotToPB(b paxos.Ballot) *kvpb.PaxosBallot {
	if b.IsZero() {
		return nil
	}
	return &kvpb.PaxosBallot{Counter: b.Counter, Node: b.Node}
}

func paxosBallotFromPB(b *kvpb.PaxosBallot) paxos.Ballot {
	return paxos.Ballot{Counter: b.GetCounter(), Node: b.GetNode()}
}

func paxosProposalToPB(p paxos.Proposal) *kvpb.PaxosProposal {
	if p.IsZero() {
		return nil
	}
	out := &kvpb.PaxosProposal{Ballot: paxosBallotToPB(p.Ballot), Noop: p.Noop}
	if !p.Noop {
		out.Record = RecordToPB(p.Record)
	}
	return out
}

func paxosProposalFromPB(p *kvpb.PaxosProposal) paxos.Proposal {
	if p == nil {
		return paxos.Proposal{}
	}
	out := paxos.Proposal{Ballot: paxosBallotFromPB(p.GetBallot()), Noop: p.GetNoop()}
	if p.GetRecord() != nil {
		out.Record = RecordFromPB(p.GetRecord())
	}
	return out
}
