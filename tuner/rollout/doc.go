// Package rollout carries out the tuner's plans: it puts a tuner.Decision's
// Plan in force one step at a time, honouring every tuner.Step obligation
// (DESIGN.md, "Cluster metadata and configuration changes").
//
// # What an Executor does
//
// For each step of a plan, in order, Executor.Apply:
//
//  1. under a quorum floor, runs a repair pass before a step that lowers a
//     quorum and requires one (tuner.Step.RepairFirst);
//  2. before a step that grows N (RequiresStreaming), announces the grown
//     N as PendingN in the metadata log, waits until every member has
//     applied that, and runs a repair pass at the new N; when that cannot
//     finish it clears PendingN again and stops, leaving N where it was;
//  3. proposes the step to the metadata log;
//  4. waits until every member has applied it, or one configuration lease
//     has passed since its commit (WaitApplied), before the next step, and
//     after the last one when the plan asks for it;
//  5. under a quorum floor, runs the repair pass of a step that only raises
//     a quorum right after it is in force everywhere.
//
// It also waits, before the first step, for the configuration in force to
// be applied everywhere. After a plan that shrinks N, once the shrink is in
// force everywhere, it cleans the keyspace on every node (Cleanup), so that
// the replicas the shrink dropped hold none of the values they stopped
// seeing deletes for; it refuses to grow N while such a cleanup is owed
// (GrowAllowed), and the tuner loop retries it at later decisions. A plan
// that stops part way returns the tuner.State in force, which is safe:
// every step committed so far is.
//
// # Contract
//
// The package owns the order of those steps and the waits between them;
// it owns no I/O. It reaches the metadata log through Log, the members
// through Cluster, repair passes through Repairer, cleanups through
// Cleaner and time through Clock, all implemented by the node package
// (over Raft, gossip and gRPC) or, in tests, by scripted fakes. It imports the tuner package and the standard
// library only: tuner stays pure (no clock, no waiting), and this package
// is the shell that waits.
//
// Concurrency: an Executor's fields are set before first use and never
// changed. Apply and SetPending block until done; the node's tuner loop
// calls them from one goroutine, one keyspace at a time, and the
// implementations of the interfaces need only be safe for that, plus
// whatever the node does with them elsewhere.
package rollout
