// Package report draws the Jepsen harness's plots: latency over time and
// throughput over time, with the fault windows shaded, as PNG files (via
// gonum/plot) that a person can look at next to the history.
//
// # Contract
//
// report draws from a history alone: it imports the history package and
// gonum/plot, nothing of the server, the SDK or the checkers. Latency and
// Throughput are synchronous, keep no state and write only the file they are
// given.
package report
