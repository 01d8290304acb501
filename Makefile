# adaptkv: common tasks. README.md documents the two that matter most:
# `make up` (a local 3-node cluster, shown working) and `make test`.
GO ?= go
BIN := bin/adaptkv

.PHONY: build up down test vet proto bench

build:
	$(GO) build -o $(BIN) ./cmd/adaptkv

# Start a local 3-node cluster of real processes and write and read a key.
up: build
	$(BIN) cluster up
	$(BIN) put hello world
	$(BIN) get hello

down: build
	$(BIN) cluster down

# The whole test suite, as CI runs it.
test: vet
	$(GO) test -race -timeout 30m ./...

vet:
	$(GO) vet ./...

# Regenerate the protobuf code (needs protoc and the two plugins, see api/generate.go).
proto:
	cd api && protoc --go_out=kvpb --go_opt=paths=source_relative \
		--go-grpc_out=kvpb --go-grpc_opt=paths=source_relative adaptkv.proto

# Benchmarks of the hot pure pieces.
bench:
	$(GO) test -run XXX -bench . -benchmem ./storage/ ./replication/... 
