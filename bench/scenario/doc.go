// Package scenario runs the tuner experiment: `adaptkv bench --scenario
// adaptive`. It answers one question with one run: does an adaptive keyspace
// keep its stale-read bound while reading about as fast as the weakest
// static level, on a cluster whose replicas are far apart?
//
// # The cluster
//
// Run starts five real `adaptkv node` processes on 127.0.0.1 (free ports,
// data under Config.Out/nodes), in three zones: n1 and n2 in "a", n3 and n4
// in "b", n5 in "c". The ring places a key's three replicas in three
// distinct zones, so every replica set spans all three. Latency between the
// zones is injected through the nodes' unsafe test hooks: every node delays
// the requests it sends to a peer by Config.IntraZoneDelay (same zone) or
// Config.CrossZoneDelay (another zone). The delay is one-way, on the
// request, so a replica in another zone receives a write about 20 ms after
// the coordinator sent it, which is what makes a read at R=1 stale when it
// lands on that replica too soon. Nodes run with a short tuner interval and
// dwell so that the experiment fits in minutes; the tuner decides on the
// metadata leader as always. The gray-failure detector runs with 5 s
// windows (Config.HealthWindow; the node's default is 2 s, in which the
// slow node, read last and sent only the few writes, gets too few requests
// to be judged): it flags the slow node about 20 s into the slow-replica
// phase, and the tuner then routes reads around it (issue 16). Its
// decisions are polled and reported beside the tuner's.
//
// # Arms, phases and the schedule
//
// Three keyspaces, all with replication factor 3, are the arms: arm_one
// (level one), arm_quorum (level quorum) and arm_adaptive (an adaptive goal:
// at most 0.1% stale reads, floor one, read p99 target 10 ms). The target
// is what tells the tuner that the keyspace wants fast reads: its cost
// weighs read and write latency by their shares, so without one it has no
// reason to prefer R=1 W=3 to R=3 W=1 at 50% writes. Every phase runs the
// same seeded operation sequence against every arm:
//
//  1. read-heavy: 95% reads, 5% writes, scrambled zipfian keys (θ 0.99);
//  2. slow-replica: the same, with n3 replying 50 ms late to its peers;
//  3. write-heavy: 50% writes, each followed 0–10 ms after its
//     acknowledgement by a read of the same key from another client
//     connection.
//
// The arms are interleaved in short slices (Config.Slice), rotating which
// arm goes first, rather than run one after the other: then a slow replica,
// a compaction or a noisy neighbour on the machine falls on all three
// alike, and the tuner sees its keyspace's traffic throughout the phase
// instead of in one late burst. Each arm gets Config.PhaseDuration of
// traffic per phase, so a phase lasts three times that. Only one arm runs
// at a time, which matters on a small machine: the arms do not compete for
// CPU, and the latencies are the cluster's rather than the scheduler's.
//
// Operations are paced at Config.Rate per second (open loop, with
// Config.Concurrency workers) rather than as fast as possible, because the
// stale-read rate depends on how often a key is read soon after it is
// written: at a common rate the arms' stale rates are comparable, whereas a
// closed loop would give the fastest arm the most chances to be stale. An
// operation i is derived from (seed, phase, i) alone, so every arm sees the
// same keys in the same order.
//
// Before phase 1 the keys are loaded (at level all) and the phase-1
// workload runs unmeasured for Config.Warmup, so that the tuner has data
// and has made its first moves. Each phase is reported twice: over the
// whole phase, and over its steady part, after Config.Settle (the tuner's
// window spans a minute, so it needs about that long to see a new phase).
//
// # Staleness
//
// The bench client knows its own writes. For every key it keeps the
// acknowledged versions with their acknowledgement times (Tracker); a read
// is stale when it began after a write was acknowledged and returned an
// older version, or nothing. Only writes acknowledged before the read
// began count, so concurrent writes never make a read stale. The age of a
// stale read is how long before it began the first write it missed was
// acknowledged.
//
// # The tuner's side
//
// During the run the decisions about arm_adaptive are polled
// (client.TunerExplain) and kept; the predicted stale-read probability of
// the configuration in force, averaged over a phase's steady part, is set
// against the measured rate. At the end of every phase the model's what-if
// predictions are recorded too, so that its prediction for R=1 W=1 can be
// compared with what arm_one measured under the same workload.
//
// # Output
//
// results.json (everything), results.md (a table per phase, the ratios and
// a pass/fail line per criterion) and plot.png (read p99 and stale rate over
// time per arm, phases shaded, tuner changes marked) in Config.Out, and a
// summary on the progress writer.
//
// # What it may import
//
// The SDK (client), the benchmark tool (bench) and node/launch, which
// starts, waits for and stops the node processes; never the server's
// packages: the experiment measures the binary. The nodes' latency and
// slowness are injected through their test hooks (launch.Cluster.Hook).
//
// # Concurrency
//
// Run is one experiment at a time: it owns the cluster, the clients and
// the workers, and stops the nodes before it returns, whatever happened.
// Inside a phase, workers share the Tracker (safe for concurrent use) and a
// background goroutine polls the tuner's decisions until the run ends.
package scenario
