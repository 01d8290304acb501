// Package bench is adaptkv's benchmark tool: the YCSB core workloads (A to
// F) with YCSB's request distributions, a closed-loop runner that measures
// with HdrHistogram, and the `adaptkv bench` command (NewCommand).
//
// # The pure core
//
// The workload generator does no I/O and is tested directly:
//
//   - key choosers (KeyChooser): YCSB's scrambled zipfian (θ 0.99, hot keys
//     spread by FNV-1a, ScrambledZipfian), uniform (UniformGen) and skewed
//     latest (SkewedLatest over an AckCounter, so that reads never target an
//     insert still in flight), built on Gray et al.'s zipfian generator
//     (ZipfianGen);
//   - the operation mix of each workload (Workloads, OpChooser);
//   - YCSB's key names (KeyName: "user" + FNV hash of the record number);
//   - the latency summary (Summarize) and the report (Report, JSON schema
//     ReportSchema).
//
// # Stores
//
// The runner drives a Store: Read, Update, Insert, Scan and Close. The
// adaptkv adapter (AdaptkvStore) is here; the etcd, Redis and gRPC echo
// adapters live in the comparison tool, bench/compare, a Go module of
// its own so that adaptkv's go.mod does not depend on etcd. The same
// generator, with the same seed, drives all of them, so their figures differ
// only by the store.
//
// # Measuring
//
// Load inserts the records; Run runs the workload for a duration or a number
// of operations with Concurrency workers, each with one request in flight
// (a closed loop, like YCSB's threads without a target rate). Latencies are
// per successful operation, per operation kind, in microseconds with three
// significant figures; failures are counted by ErrorKind. A timeline point
// per second feeds the live status line and the --plot PNG.
//
// RunOpenLoop is the other mode: operations are sent at a fixed offered
// rate (a schedule of RateSteps), each at its intended time whatever the
// store does, and latency is measured from that time, so that a store that
// falls behind is charged for the queueing it causes (no coordinated
// omission). The overload benchmark (package overload, `adaptkv bench
// --scenario overload`) is built on it.
//
// A figure means little without its settings: the JSON report carries the
// workload, the distribution, the record and value sizes, the concurrency,
// the consistency level, the seed and the machine (Host).
//
// # Where it lives, and what it may import
//
// The benchmark tooling is not part of the SDK: it lives at the top level,
// beside cmd/adaptkv, which only mounts NewCommand. It may import the SDK
// (client), node/clustertest (`adaptkv bench --local N` runs an in-process
// cluster) and node/launch (the scenarios start real node processes), but
// the SDK never imports it. Its subpackages: scenario (the tuner
// experiment), overload (the overload benchmark) and compare (the etcd and
// Redis comparison, a Go module of its own).
//
// # Concurrency
//
// A Run or RunOpenLoop owns its workers and returns only when they have
// all ended. The key choosers that share state across workers
// (SkewedLatest, AckCounter) are safe for concurrent use; the other
// generators are one per worker, seeded from the run's seed.
package bench
