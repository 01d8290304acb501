# adaptkv: common tasks. README.md documents the two that matter most:
# `make up` (a local 3-node cluster, shown working) and `make test`.
GO ?= go
BIN := bin/adaptkv

.PHONY: build up down test vet proto bench fuzz-ci image k8s-manifests

build:
	$(GO) build -o $(BIN) ./cmd/adaptkv

# Start a local 3-node cluster of real processes and write and read a key.
up: build
	$(BIN) cluster up
	$(BIN) put hello world
	$(BIN) get hello

down: build
	$(BIN) cluster down

# The whole test suite, as CI runs it: the module, then the etcd
# comparison, which is a module of its own (it keeps etcd out of go.mod).
test: vet
	$(GO) test -race -timeout 30m ./...
	cd bench/compare && $(GO) test -race -timeout 10m ./...

vet:
	$(GO) vet ./...

# Every fuzz target (package:Target) briefly, one per go test as -fuzz requires.
# CI runs it after `make test`; FUZZTIME=10m gives the long local run.
FUZZTIME ?= 5s
FUZZ_TARGETS := storage:FuzzRecordCodec storage:FuzzRaftLogCodec \
	replication:FuzzHintStore jepsen/history:FuzzRead \
	node:FuzzMetadataApply node:FuzzMetadataRestore node:FuzzKVRequest \
	api/ring:FuzzPreferenceList client:FuzzSessionToken replication/paxos:FuzzStateCodec

fuzz-ci:
	@missing=$$(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' . | sed 's/^func //' | \
		while read -r f; do echo "$(FUZZ_TARGETS)" | grep -qw "$$f" || echo "$$f"; done); \
	if [ -n "$$missing" ]; then echo "fuzz-ci: add to FUZZ_TARGETS: $$missing"; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in ./$$pkg for $(FUZZTIME)"; \
		$(GO) test -run XXX -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -timeout 0 ./$$pkg/; \
	done

# Regenerate the protobuf code (needs protoc and the two plugins, see api/generate.go).
proto:
	cd api && protoc --go_out=kvpb --go_opt=paths=source_relative \
		--go-grpc_out=kvpb --go-grpc_opt=paths=source_relative adaptkv.proto

# Benchmarks of the hot pure pieces.
bench:
	$(GO) test -run XXX -bench . -benchmem ./storage/ ./replication/... ./api/ring/

# The container image, built without a Docker daemon (deploy/image): a
# static binary in an image with no base, written as a tarball for
# `docker load -i` or `podman load -i`. IMAGE_TAG defaults to adaptkv:VERSION.
IMAGE_TAR ?= bin/adaptkv-image.tar
IMAGE_TAG ?=
image:
	$(GO) run ./deploy/image -o $(IMAGE_TAR) $(if $(IMAGE_TAG),-tag $(IMAGE_TAG))

# The Kubernetes manifests (deploy/kubernetes), rendered by kustomize.
k8s-manifests:
	kubectl kustomize deploy/kubernetes
