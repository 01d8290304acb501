// Package api is adaptkv's protocol: the protobuf definitions
// (adaptkv.proto, with the client API KV, the administration API Admin and
// the replica-to-replica API Peer), their generated Go code in api/kvpb, and
// the names that the server and the SDK must spell alike. The recipe for
// regenerating the code is in generate.go.
//
// # Shared names
//
// Each name the two sides exchange is declared here once, and both use it:
//
//   - Level, the consistency levels, numbered as the protobuf enum
//     kvpb.Level (a plain type conversion goes between them), with their
//     names as the CLI, the metadata log and the metrics spell them
//     (Level.String, ParseLevel), and AdaptiveName for adaptive keyspaces.
//     replication/quorum.Level and client.Level are aliases of Level.
//   - The google.rpc.ErrorInfo of error statuses: ErrorDomain, the Reason
//     constants (each says with which code it is sent and whether a write
//     refused with it certainly did nothing), Reasons, the list of every
//     reason a server sends, and the Meta keys of the numbers some reasons
//     carry. The node sends only these reasons, and the SDK maps each of
//     them; tests on both sides keep it so.
//
// A new reason is declared here first: the SDK's test fails until the SDK
// classifies it, and the node's until the node sends it by its constant. A
// new level is added to the protobuf enum and here together
// (TestLevelsMatchProto fails otherwise).
//
// # Imports
//
// api imports only the standard library, and not even its own generated
// code, so that the pure cores (replication/quorum, tuner) can use the
// names without pulling in protobuf or gRPC. Every package may import api;
// api and api/kvpb import nothing of adaptkv, and the SDK (client) imports
// nothing of adaptkv but them.
//
// # Concurrency
//
// Everything here is a constant or a pure function, safe to use from any
// goroutine.
package api
