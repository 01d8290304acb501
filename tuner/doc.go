// Package tuner is the brain of adaptkv's adaptive consistency level. For
// each keyspace it watches the workload and the replicas, predicts how every
// candidate configuration (N, R, W, read path) would do, and picks the
// cheapest one that meets the keyspace's Goal: a bound on the stale-read
// probability, a floor, bounds on N and W, and optional latency targets.
//
// The core is a pure function, in the manner of memberlist's
// remainingSuspicionTime and etcd's raft: Decide does no I/O, reads no
// clock (time is an argument), starts no goroutine and draws its random
// numbers from a seeded generator, so the same inputs always give the same
// decision and a recorded trace of observations replays exactly in a test.
// Only Recorder, the hot-path collector, is safe for concurrent use, and it
// uses nothing but atomics. The package imports only the standard library
// and package api (for the level names), and nothing from replication:
// Policy mirrors replication/quorum.Policy and the node translates between
// them. It owns the model, the policy search, the plans and the decisions'
// explanations; the node owns the loop that calls Decide, the metadata log
// that keeps State, and the execution of a Plan's steps.
//
// # What the node must do
//
// On every node, for every keyspace, the coordinator feeds a Recorder on
// the hot path: Read and Write with client-visible latencies; Gap with the
// time from the last acknowledged write of the key a read asks for to the
// read's start (ideally from a bounded map or sketch of last-commit times;
// adaptkv's node estimates it from the returned version's age, see
// Observation.Gap; reads of keys not written recently are not recorded);
// Key with the key's hash; Leg with each
// replica's W, A, R and S one-way times, or its write and read round trips
// (LegWriteRTT, LegReadRTT) when one-way times are unknown; Sent and Timeout
// for every replica request; and Probe for every read whose freshness read
// repair or a digest probe could check. Each call is a few atomic adds.
//
// On the metadata leader (one tuner drives each keyspace, see DESIGN.md),
// every decision interval — a few seconds — the node must:
//
//  1. Take each keyspace's Recorder.Snapshot(now, policyInForce,
//     liveNodes), gathered from every node that coordinates the keyspace
//     and combined with Merge, giving one Observation for the interval.
//  2. If the previous decision is still being watched, call its
//     Decision.Observe with what was measured since, and store it.
//  3. Window.Push the observation; the window bounds memory and the span of
//     evidence the tuner weighs.
//  4. Call Decide(model, state, window, goal, now) and keep the State it
//     returns, with the Decision, in the metadata log so that a new leader
//     resumes with the same calibration and dwell clock. Log the Decision
//     (its Explanation is written for a person on call).
//  5. If the Decision changed the policy, apply its Plan step by step,
//     honouring each Step's obligations: RequiresStreaming (stream existing
//     data to the added replicas, sending them new writes meanwhile, before
//     committing the step; the node does it with a PendingN configuration
//     applied everywhere, then a repair pass at the new N), RequiresAllApplied (wait until every live node
//     has applied the step before committing the next), RequiresRepair (run
//     a repair pass before committing a lowering step, or right after a
//     raising one; the plan already accounts for writes made under weaker
//     configurations since the last pass, kept in State.Unrepaired). A
//     caller that stops part-way, or skips a pass, keeps State.Unrepaired
//     true with State.Moved and State.Repaired. Each step is one
//     configuration in the metadata log, with
//     its own epoch; ReadHedged policies also carry Decision.Chosen's
//     HedgeAfter to the coordinators.
//  6. Until the plan's last step is applied everywhere, either skip Decide
//     for that keyspace or pass it a State whose Policy is the one actually
//     in force.
//
// # The model
//
// Model.Predict is a Monte Carlo over PBS's WARS model (Bailis, Venkataraman,
// Franklin, Hellerstein and Stoica, "Probabilistically Bounded Staleness for
// Practical Partial Quorums", VLDB 2012). A write is sent to all N replicas
// at once; replica j has it after W_j and its acknowledgement arrives A_j
// later; the write commits at the W-th acknowledgement. A read issued t after
// the commit reaches replica j after R_j and its reply returns S_j later;
// replica j's reply is fresh iff W_j ≤ commit + t + R_j, and the read is
// stale iff none of the replies it answers with is fresh. The legs are drawn
// from each replica's observed histograms (Hist, sampled in O(1) by the
// alias method), t from the observed write→read gap distribution, and a
// key's N replicas are a uniformly random N-subset of the observed nodes, as
// ring placement makes them for a random key. Nodes the gray-failure
// detector flagged (Observation.Flagged) are routed as the cluster routes
// them: read last, never the reading or writing coordinator, but sent every
// write and counted toward W; so a flagged slow replica costs neither reads
// nor a partial write quorum that leaves it out any staleness. When the
// replicas are observed by rank from the coordinator (adaptkv's node), the
// share of keys that hold a flagged node (Observation.FlaggedShare) have it
// as their last-ranked replica, drawn from its own legs, which the node
// records apart from the ranks (ReplicaObservation.Apart); the other keys
// draw theirs from the last rank, which then holds only healthy replicas.
// The workload's predicted
// stale-read probability is the share of reads that follow a write of their
// key (Observation.AtRisk) times the Monte Carlo probability. All
// candidates with the same N are evaluated on the same trials (common random
// numbers), and latency percentiles come from the same trials: a read's
// latency is the R-th reply (ReadAll), the slowest of the R nearest
// (ReadNearest), or that with one request hedged to the next replica after
// the unhedged latency's Model.HedgeQuantile (ReadHedged).
//
// What the model assumes, and so where it can be wrong:
//
//   - Legs are independent across replicas and of each other, and
//     stationary over the window. Correlated slowness (a shared switch, a
//     GC pause during the write and the read) is not modelled.
//   - Latencies do not depend on the policy. Asking fewer replicas lowers
//     their load and so their latency; the model does not see that until
//     the new policy has been observed (the window then shows it).
//   - When only round trips are measured, each is split between the two
//     directions at Model.WriteLegShare and Model.ReadLegShare (half and
//     half by default; see ReplicaObservation), which assumes symmetric
//     links and no queueing at the replica.
//   - The write→read gap is estimated, not measured per key (see
//     Observation.Gap): under a partial quorum a stale read's gap looks
//     longer than it was, so the raw prediction there is low and
//     calibration must make up the difference.
//   - Staleness is relative to the latest write that completed before the
//     read began; concurrent writes and last-writer-wins ties under clock
//     skew are out of scope (the measured rate includes them, which is one
//     reason for calibration). Read repair and anti-entropy only make reads
//     fresher, so ignoring them errs on the side of safety.
//   - A replica that times out on a write gets it Model.HintDelay after the
//     timeout (hinted handoff), and a request that times out counts as a
//     failure at Model.Timeout.
//   - With R + W > N every read meets a replica that acknowledged the
//     write before it committed, so the prediction is exactly 0 whatever the
//     latencies; the tests check this, and the closed forms the Monte Carlo
//     agrees with (TestStaleClosedFormN3R1W1).
//
// # Calibration
//
// Each keyspace's State carries a Calibration: one factor, learnt online,
// that multiplies the model's stale-read predictions. The probed and stale
// reads of the intervals under one partial quorum, and the stale reads the
// model expected of them, accumulate until MinProbes reads were probed;
// then the log of the ratio of measured to expected stale reads (each
// padded with a pseudo-count) is folded into an exponentially weighted mean
// and clamped to [1/MaxFactor, MaxFactor]. When the policy changes first
// (a step back), evidence with at least MinStale stale reads is folded and
// weaker evidence dropped. The model thus learns the cluster it runs on
// without ever being able to call an overlapping quorum stale. See
// Calibration for the formula and why it is in log space.
//
// A LatencyCalibration likewise learns, from the p99s the coordinators
// measure under the policy in force, an offset added to every candidate's
// predicted read and write p99 (the coordinator's own work, which the
// replica round trips leave out). It makes the latency targets and the
// predicted-against-observed figures honest; costs use the raw p99s.
//
// # The policy
//
// Decide enumerates Candidates within the goal's bounds (floor quorum keeps
// only R+W > N), predicts them, keeps those within the stale-read bound, and
// takes the cheapest, preferring those that meet the latency targets. The
// cost, in milliseconds, is the read-share-weighted read p99 plus the
// write-share-weighted write p99, plus replica load (requests per
// operation), copies kept, hot-key load per replica and the chance of
// failing; see CostWeights. Those terms make read-hot, skewed keyspaces and
// keyspaces with flapping replicas prefer more replicas, and cold,
// write-heavy ones fewer. A change needs Model.Dwell since the last one and
// a relative gain of Model.MinGain, so noise does not flap the policy. Moves
// to safety ignore both and happen at once: when probes measure a stale-read
// rate above the goal under a partial quorum (step back to the cheapest
// overlapping quorum at the same N), when the policy in force is predicted
// to miss the goal, and when it falls outside the goal's bounds. A step
// back, or a forced move away from a partial quorum predicted to miss the
// goal, also starts a Backoff: partial quorums as weak as the one left are
// not eligible for Model.BackoffBase, doubling with each step back in a row
// up to Model.BackoffMax, so that a model that under-predicts a partial
// quorum does not walk back into it every time dwell has passed; decisions
// held back by it give ReasonBackoff and say until when.
//
// Plan turns a change into safe steps (DESIGN.md, "Cluster metadata and
// configuration changes"): N grows first, streaming before the new replicas
// count; N shrinks last; R or W go down only after a joint step with each the
// larger of old and new. Between overlapping policies every step overlaps,
// and reads and writes under adjacent steps meet (checked exhaustively for
// N ≤ 7).
//
// # Explanations
//
// Every Decision carries its inputs (Summary), every candidate weighed with
// its predicted stale-read probability, latencies and cost, the choice, a
// Reason code and an Explanation sentence for a person on call, the Plan,
// and, filled in later by Observe, what was measured. FormatDecision renders
// it for `adaptkv tuner explain`; WhatIf serves `adaptkv tuner whatif`;
// decisions marshal to JSON with explicit snake_case tags.
//
// # References
//
//   - P. Bailis et al., Probabilistically Bounded Staleness for Practical
//     Partial Quorums, VLDB 2012 (the WARS model and t-visibility).
//   - H.-E. Chihoub et al., Harmony: Towards Automated Self-Adaptive
//     Consistency in Cloud Storage, IEEE CLUSTER 2012 (choosing the read
//     quorum from the stale-read tolerance).
//   - D. Terry et al., Consistency-Based Service Level Agreements for Cloud
//     Storage (Pileus), SOSP 2013 (consistency and latency as one goal).
//   - L. Suresh et al., C3: Cutting Tail Latency in Cloud Data Stores via
//     Adaptive Replica Selection, NSDI 2015 (nearest-first routing).
//   - S. Sidhanta et al., OptCon: An Adaptable SLA-Aware Consistency Tuning
//     Framework for Quorum-based Stores, CCGrid 2016.
//   - J. Dean and L. A. Barroso, The Tail at Scale, CACM 2013 (hedging).
//   - A. Metwally et al., Efficient Computation of Frequent and Top-k
//     Elements in Data Streams, ICDT 2005 (Space-Saving, for key skew).
package tuner
