// Package overload is the overload benchmark, `adaptkv bench --scenario
// overload`: it measures a cluster's closed-loop peak, then offers it three
// times that in an open loop for a minute, then a normal rate again, and
// reports goodput, the latency of what the cluster admitted, each node's
// memory, and how soon latency is back to normal. Given a second binary (an
// older build) it runs the same schedule against a cluster of that build in
// the same run, so that the two compare as ratios on one machine.
//
// Each arm starts its own node processes (3 by default, on 127.0.0.1, data in
// Config.Out), loads the records, and runs:
//
//  1. peak: YCSB closed loop (Config.Concurrency workers) for Config.Peak;
//     its throughput is the peak X and its p99 the reference latency;
//  2. normal: open loop at Config.Normal × X, giving the normal p99;
//  3. overload: open loop at Config.Multiplier × X for Config.Overload;
//  4. recovery: open loop at Config.Normal × X for Config.Recovery.
//
// Open-loop latencies run from each request's intended send time (see
// bench.RunOpenLoop). Every node's VmRSS is sampled twice a second from
// /proc/PID/status, and its VmHWM (peak RSS since start) read at the end.
//
// # What it may import
//
// The benchmark tool (bench, for the workload and RunOpenLoop), the SDK
// and node/launch, which starts and stops each arm's node processes; never
// the server's packages: each arm runs a binary, possibly an older build.
//
// # Concurrency
//
// Run measures one arm at a time, so that the arms never compete for the
// machine; within an arm the load generator's workers and one memory
// sampler run until the arm's schedule ends, and the arm's nodes are
// stopped before the next arm starts.
package overload
