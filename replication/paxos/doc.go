// Package paxos is the pure protocol logic of adaptkv's `linearizable`
// level and its conditional writes: single-decree Paxos per key, leaderless,
// in the manner of Cassandra's lightweight transactions (Paxos v2, CEP-14),
// and an ABD-style linearizable read. It does no I/O, starts no goroutines,
// reads no clock and draws no random numbers (TestPackageIsPure): time and
// chance arrive as data in events, and everything to be done leaves as data
// in Effects, as with etcd-io/raft's Ready.
//
// # Roles
//
// Each replica of a key is an acceptor. Its per-key State (promised ballot,
// last accepted proposal, highest committed ballot) is a small value; the
// replica keeps it durably, next to the key's record, and changes it only
// through the pure transitions Prepare, Propose and Commit (Peek reads it).
// The replica's obligations, which the shell must meet:
//
//  1. Serialize the messages of one key: read the state and the record,
//     apply the transition, write both, under one per-key lock.
//  2. Persist the new state (AppendState; DecodeState to load it), and for
//     a commit the record too, in one atomic, synced batch, before
//     replying. An acceptor that forgets a promise or an acceptance after
//     a crash breaks safety. One exception: a commit for which
//     CommitMayDefer holds (a lazy one, or of the acceptor's own accepted
//     proposal) may be
//     answered before its batch is synced, provided the storage loses only
//     a suffix of unsynced batches in a crash (see CommitMayDefer).
//  3. Answer a prepare (and a read) with the record read atomically with
//     the state: the prepare is the round's read, which is what makes an
//     uncontended conditional write two round trips.
//  4. To forget a key's state (Cleanable), first raise, durably, a low
//     bound to at least the state's Top, and from then on answer prepares
//     and proposals with PrepareAbove and ProposeAbove, which refuse every
//     ballot at or below it.
//
// A coordinator runs each conditional write as a Proposer and each
// linearizable read as a Reader: ops that take Events and return Effects.
// The shell sends Effects.Send, arms Effects.Timer, waits Effects.Backoff
// with its own jitter before sending EvRetry, answers the client with
// Effects.Done, and stops feeding the op at Effects.Finished.
//
// # A round
//
// A Proposer draws a ballot above every ballot it has seen (NextBallot) and
// sends MsgPrepare to every replica. With a quorum (N/2+1) of promises:
//
//  1. If a promise reports an accepted, uncommitted proposal above the
//     highest committed ballot in the quorum, some round may have had it
//     chosen: the proposer proposes it again at its own ballot, commits it
//     to a quorum, and starts over with a new ballot (Paxos's rule that a
//     phase 2 carries the highest accepted value; Cassandra's "in-progress
//     proposal" completion).
//  2. Otherwise the current record is the newest in the quorum. Replicas
//     of the quorum behind it get it written back (MsgCommit at the highest
//     committed ballot seen), so that a quorum holds it before anything is
//     decided on it; this also clears their dead accepted proposals.
//  3. The condition is checked on the current record. If it holds, the new
//     record is proposed (MsgPropose); once a quorum accepts it is chosen,
//     the client is told it applied, and MsgCommit goes to every replica
//     with the answer: a lost commit is completed by the next round that
//     finds the proposal in progress (step 1), so the client need not wait
//     for it.
//
// A round refused (a higher ballot), short of answers, or timed out backs
// off and starts over, up to Request.MaxAttempts rounds.
//
// # Leases
//
// An uncontended conditional write costs two round trips to the replicas,
// each with an fsync: the prepare and the propose. A coordinator that runs
// the next conditional write on the same key saves the first. With
// Request.Renew, its proposal asks each acceptor to promise the
// coordinator's next ballot in the same step as it accepts (ProposeNext):
// once a quorum accepted, the proposal is chosen, and the same quorum
// promised the next ballot when the chosen proposal was its highest
// accepted one. That is a Paxos phase 1 for the next ballot, done early:
// the Lease (Proposer.Lease). The next op at that coordinator (Request.Lease)
// proposes at the lease's ballot at once, decided against the lease's
// record, and asks each acceptor to commit the lease's proposal first (it
// was chosen) and to promise the ballot after: one round trip, one fsync,
// and a new lease. Why that is Paxos: had the op sent a prepare at the
// lease's ballot instead, the promising quorum would have reported the
// lease's proposal as its highest accepted, which the coordinator knows is
// chosen, so the round would commit it and decide on its record, exactly
// what the leased op does. Promises do not expire: a higher ballot that
// reached an acceptor since (another coordinator's round, a Paxos read)
// makes it refuse the leased proposal, as it would any proposal of a
// lower ballot. Refused by every replica, the op prepares at once (not a
// contention backoff); accepted by some and refused by others, its
// outcome is unknown, as for any proposal.
//
// What the lease does not give: an answer. A lease's record may be stale
// (another coordinator may have written since), so an op whose condition
// fails on it, and every Paxos read, prepares as usual; the op's own unused
// promise is then not counted as a round that began (see "# Failed
// conditions and reads"). A ballot carries one proposal, so the shell hands
// a lease to one op only, and runs a key's ops on one coordinator one at a
// time, each drawing above the last one's ballots (Request.Above), which
// clocks alone do not guarantee. TestModelExhaustive checks leased ops
// against ops of other coordinators, reads, crashes and cleanups.
//
// # Thrifty proposals
//
// A proposal needs the acceptance of a quorum, not of every replica
// (Paxos phase 2 may go to any acceptors: what makes a ballot's proposal
// safe is the prepare, or the lease, before it). With Request.Thrifty the
// op sends its own proposal to the first quorum of Request.Replicas only,
// which the shell orders nearest first (this node's replica, then by the
// round trips it measured); under a lease, the lease's promisers come
// first (Lease.Promisers). An uncontended write then makes N/2+1
// acceptors sync, not N. The rest are asked when one of the quorum fails,
// when one refuses while another accepted (ours is out, and the others may
// yet make the quorum), or when the round's timer, armed as a hedge
// (Effects.Hedge), fires first: a slow replica costs the hedge, not the
// replica timeout. When every replica asked refused, nothing of ours was
// accepted anywhere: the op prepares again (under a lease) or backs off,
// without asking the rest, which would make its outcome unknown (a
// replica that never promised a lease's ballot accepts it; that is why a
// lease's promisers are asked first).
//
// The commit of a chosen proposal goes to every replica, so a replica left
// out learns the record as fast as the others, and it is lazy
// (Message.Lazy): the proposer never counts its replies, so every acceptor
// may apply it without a sync (CommitMayDefer). Lost in a crash, a lazy
// commit is a commit message lost in the network, which the next round, a
// linearizable read, read repair or anti-entropy make good.
// TestModelExhaustive runs thrifty proposers (with leases, reads, faults,
// crashes that lose lazy commits, and cleanups), firing the hedge at any
// moment as it fires every timer.
//
// # Versions
//
// A committed record is written to storage like any other, last writer
// wins, so plain reads, read repair, hints and anti-entropy need nothing
// new. For that to agree with the Paxos order, the record a proposer
// proposes gets the version (max(clock, current.Timestamp+1), Node): its
// node's HLC reading, raised above the current record it was decided
// against. Every chosen record is decided against its predecessor, which
// is visible to the deciding quorum (steps 1 and 2), so versions of chosen
// records increase in the order they are chosen, whatever the clocks say.
// The clock only makes versions resemble wall time; a lagging clock costs
// nothing but that resemblance.
//
// A plain write at a weaker level on the same key is not ordered by Paxos:
// it is a record with an HLC version like any other. A round that sees it
// (in its quorum) decides against it and writes above it; one that does not
// may write a version below it, which then loses to it under last writer
// wins, exactly as if the plain write had come after. Mixing plain writes
// with conditional writes on a key therefore gives the plain writes'
// guarantees, not linearizability.
//
// # Failed conditions and reads
//
// A condition that does not hold writes nothing, and the answer carries the
// current record. It must still be ordered after every write that was
// answered before it began: the write-back of step 2 puts the current
// record on a quorum, and when no round has begun since the last accepted
// or committed one (no promise in the quorum was above it), no write can be
// chosen before this answer that it misses, so it answers at once: one
// round trip. Otherwise it proposes a Noop at its ballot, which shuts out
// the concurrent round's older ballot, and answers once a quorum accepts.
// A ReadOnly Condition is the same path with a condition that never holds:
// a Paxos read.
//
// # Outcomes
//
// Applied, or not applied with the current record, or an error. When the
// operation's own proposal went out and was neither chosen by a quorum nor
// refused by every replica, a later round may still complete it: the answer
// is ErrUnknownOutcome, and the proposer does not retry, since checking the
// condition again could apply the write twice (after its first proposal was
// completed by someone else and overwritten). ErrContended and
// ErrUnavailable mean nothing of the operation's was written.
//
// # Linearizable reads
//
// A Reader asks a quorum of replicas (nearest first; the rest when one of
// them fails or the timer fires) for its record and its acceptor state
// (Peek) and decides on a quorum of answers, as in ABD: when they agree on the
// record and none holds an accepted proposal above the highest committed
// ballot among them, the record is the answer, in one round. When they
// disagree, the newest is written back to those behind before answering. An
// accepted proposal above every commit may already be chosen and answered
// to its client with no record showing it; the read cannot tell, and
// escalates (Effects.Escalate) to a Paxos read, which completes it.
//
// # Testing
//
// testdata/* are datadriven scripts of acceptors and ops (uncontended and
// failed conditional writes, dueling proposers, completion of in-progress
// proposals, refusals, reads). TestModelExhaustive explores every
// interleaving of small models (three acceptors, two or three clients,
// messages delivered in any order, some lost, timers firing early) and
// checks that chosen values form one chain and that every history is
// linearizable; a fault may also be a crash of an acceptor that answered
// commits without syncing them (CommitMayDefer), which loses them; and in
// the models with cleanups an acceptor may forget its state whenever
// Cleanable allows (raising its low bound), at any moment.
package paxos
