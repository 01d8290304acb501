// Package history is the record of a Jepsen run: every client operation's
// invocation and completion, the nemesis's faults and the run's phases, in
// one timeline, stored as JSON lines (one Op per line).
//
// The vocabulary is Jepsen's. A logical process invokes one operation at a
// time; its completion is ok (it happened), fail (it certainly did not
// happen) or info (it may or may not have happened: a timeout, a connection
// lost, a write short of its W acknowledgements). After an info completion a
// client continues under a fresh process number, so that every process stays
// single-threaded for the checkers, which treat an info write as concurrent
// with everything after its invocation.
//
// # Contract
//
// history owns the Op record and its JSON lines format, the Recorder that
// writes a run's history as it happens, and the helpers every reader needs
// (Pairs, FaultWindows). It imports only the standard library, so that the
// checkers, the nemesis and the report can share it without depending on
// each other. A Recorder is safe for concurrent use: every client worker
// and the nemesis append to the same one, and its times come from one
// monotonic base. The other functions are pure.
package history
