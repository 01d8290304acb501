// Package kvpb is the Go code that protoc generates from api/adaptkv.proto:
// the messages, and the gRPC clients and servers of the KV, Admin and Peer
// services. Do not edit the generated files; change the .proto and
// regenerate (see package api), then commit both.
//
// # Contract
//
// The messages are the wire format between SDK and node and between nodes,
// so a change must stay compatible with the other side's older code: add
// fields under new numbers, never renumber or reuse one. The enum Level has
// a twin in api.Level, value for value (api's TestLevelsMatchProto).
//
// kvpb imports protobuf and gRPC only. The server and the SDK both import
// it; the SDK keeps it out of its exported API.
//
// Messages are not safe for concurrent mutation; a message being sent must
// not be modified until the call returns. Generated clients are safe for
// concurrent use, as their gRPC connection is.
package kvpb
