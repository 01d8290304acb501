// Package quorum holds the quorum arithmetic of adaptkv: consistency levels,
// the (N, R, W) policy they resolve to, and the Tally that decides when a
// replicated operation has won or lost. It does no I/O and reads no clock, in
// the manner of etcd's raft quorum package, so every rule here is tested
// directly.
//
// # Levels
//
// Level is an alias of api.Level, and One, Quorum, All, Custom and Default
// are its constants under this package's names: the levels are declared once,
// in package api, for the server and the SDK alike. Resolve turns a level
// into R and W for a keyspace's N, and refuses what cannot be served.
//
// # Imports
//
// Only the standard library and package api (names, itself free of
// imports). Keep it that way: the coordinator, the node and the tests all
// lean on this arithmetic, and it must stay trivially checkable.
//
// # Concurrency
//
// Policy and Level are values, safe to share. A Tally belongs to one
// operation and is not safe for concurrent use: the goroutine that runs the
// operation records every answer.
package quorum
