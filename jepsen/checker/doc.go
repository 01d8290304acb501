// Package checker holds the pure checkers of the Jepsen harness: functions
// from a finished history (package history) to a verdict with the anomalies
// found. They do no I/O (except writing Porcupine's visualization when
// asked), so that `adaptkv jepsen analyze` can re-check a stored history and
// unit tests can feed them small hand-made histories.
//
// Every checker treats an info completion as "may have happened": an info
// write is concurrent with everything after its invocation (Porcupine: its
// return time is +infinity), may or may not be visible in any later read,
// and is never counted as lost; a fail completion certainly did not happen,
// so seeing its value is itself an anomaly. Failed and info reads carry no
// information and are ignored.
//
// # Contract
//
// The checkers own the verdicts: linearizability (Porcupine), the set, the
// session guarantees, staleness per level, no phantoms, convergence and the
// performance figures, and Check, which runs those of a workload. They
// import the history package, Porcupine and package api (the level names
// the staleness checker orders); never the client, a cluster or the node,
// so that a stored history is all they need. Each checker is a synchronous
// function of its arguments and keeps no state between calls; Linearizable
// checks keys on parallel goroutines and waits for them before it returns,
// bounded by its context and LinearOptions.Timeout.
package checker
