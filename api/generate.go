package api

// The generated Go code is in api/kvpb and is committed. Regenerate it with
// `make proto`, which needs protoc (Debian: protobuf-compiler) and the two
// plugins:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

//go:generate protoc --go_out=kvpb --go_opt=paths=source_relative --go-grpc_out=kvpb --go-grpc_opt=paths=source_relative adaptkv.proto
