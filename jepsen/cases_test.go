package jepsen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/checker"
	"github.com/adaptkv/adaptkv/jepsen/cluster"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig is a short run (about 20 s) of five nodes for CI.
//
// The scenario tests run in parallel, each cluster on its own /24 of
// loopback addresses (firstIP), so that their nodes and their iptables
// rules (which match addresses) never meet.
func testConfig(t *testing.T, workload, level, nem string) Config {
	cfg := DefaultConfig()
	cfg.Workload, cfg.Consistency, cfg.Nemesis = workload, []string{level}, nem
	cfg.Nodes, cfg.RF = 5, 3
	cfg.WarmUp = Duration(1500 * time.Millisecond)
	cfg.Time = Duration(12 * time.Second)
	cfg.NemesisOn, cfg.NemesisOff = Duration(5*time.Second), Duration(2*time.Second)
	cfg.NemesisMode = "all"
	cfg.Recovery = Duration(2 * time.Second)
	cfg.Rate, cfg.Concurrency = 100, 10
	cfg.ConvergeTimeout = Duration(20 * time.Second)
	cfg.HealTimeout = Duration(40 * time.Second)
	cfg.Out = filepath.Join(t.TempDir(), "run")
	if d := os.Getenv("JEPSEN_KEEP_DIR"); d != "" {
		// Keep the run (node logs, history) after the test, to study a
		// failure.
		cfg.Out = filepath.Join(d, t.Name())
	}
	cfg.Bin = nodeBin
	cfg.Progress = logWriter{t}
	return cfg
}

// parallel runs the test in parallel with the other scenarios, on the
// loopback /24 127.0.<lane>.0.
func parallel(t *testing.T, cfg *Config, lane int) {
	t.Parallel()
	cfg.FirstIP = fmt.Sprintf("127.0.%d.2", lane)
}

// run runs cfg and checks that it cleaned up after itself: no node process
// left, no iptables chain left.
func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range processesUnder(cfg.Out) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if res != nil {
		var b strings.Builder
		res.Summary(&b)
		t.Log(b.String())
	}
	if err != nil {
		t.Fatalf("run could not be done: %v", err)
	}
	t.Logf("run took %v (porcupine and the other checkers %.2fs)", time.Since(start).Round(time.Millisecond), res.Run.CheckSeconds)
	if left := processesUnder(cfg.Out); len(left) > 0 {
		t.Errorf("node processes left running: %v", left)
	}
	if res.Run.Chain != "" && cluster.ChainExists(context.Background(), res.Run.Chain) {
		t.Errorf("iptables chain %s left behind", res.Run.Chain)
	}
	for _, f := range []string{ConfigFile, HistoryFile, ResultsFile, SummaryFile, LatencyPlot, ThroughputPlot} {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			t.Errorf("run folder lacks %s", f)
		}
	}
	return res
}

func checkerOf(t *testing.T, res *Result, name string) *checker.Result {
	t.Helper()
	c := res.Checker(name)
	if c == nil {
		t.Fatalf("no %s checker in the result", name)
	}
	return c
}

// TestRegisterOnePartitionClockIsCaught: at level one, under partitions
// and clock skew, the register history is not linearizable, and the report
// names the offending operations, writes Porcupine's visualization, and
// is found again by `adaptkv jepsen analyze`.
func TestRegisterOnePartitionClockIsCaught(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadRegister, "one", "partition,clock")
	parallel(t, &cfg, 1)
	res := run(t, cfg)
	lin := checkerOf(t, res, "linearizable")
	if lin.Valid != checker.Invalid {
		t.Fatalf("register at one under partition+clock judged %v: %s", lin.Valid, lin.Summary)
	}
	if res.ExitCode() != ExitAnomaly {
		t.Errorf("exit status %d, want 1", res.ExitCode())
	}
	ops, err := history.ReadFile(filepath.Join(cfg.Out, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	a := lin.Anomalies[0]
	if len(a.Ops) == 0 || a.Ops[0] >= len(ops) || ops[a.Ops[0]].Key != a.Key || ops[a.Ops[0]].Type != history.Invoke {
		t.Fatalf("anomaly does not name an operation of key %s: %+v", a.Key, a)
	}
	t.Logf("offending operation: %+v\n%s", ops[a.Ops[0]], a.Description)
	if _, err := os.Stat(filepath.Join(cfg.Out, LinearFile)); err != nil {
		t.Errorf("no Porcupine visualization: %v", err)
	}
	st := lin.Stats.(checker.LinearStats)
	t.Logf("porcupine checked %d operations on %d keys in %.3fs", st.Operations, st.Keys, st.CheckSeconds)

	// The stored history is re-checked offline with the same verdict.
	again, err := Analyze(context.Background(), cfg.Out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ExitCode() != ExitAnomaly || checkerOf(t, again, "linearizable").Count != lin.Count {
		t.Errorf("analyze: %v, %s", again.Valid, checkerOf(t, again, "linearizable").Summary)
	}
}

// TestSetCatchesDroppedWrites: nodes that acknowledge writes without
// storing them (the drop-writes test hook, on every node during the fault
// windows) lose acknowledged elements, and the set checker says which.
func TestSetCatchesDroppedWrites(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "drop-writes:all")
	cfg.Time = Duration(8 * time.Second)
	cfg.NemesisOn = Duration(4 * time.Second)
	cfg.ConvergeTimeout = Duration(6 * time.Second)
	parallel(t, &cfg, 2)
	res := run(t, cfg)
	set := checkerOf(t, res, "set")
	st := set.Stats.(checker.SetStats)
	if set.Valid != checker.Invalid || st.LostCount == 0 {
		t.Fatalf("dropped writes not caught: %s", set.Summary)
	}
	if set.Anomalies[0].Type != "lost" || len(set.Anomalies[0].Ops) == 0 {
		t.Errorf("anomaly %+v", set.Anomalies[0])
	}
	if res.ExitCode() != ExitAnomaly {
		t.Errorf("exit status %d, want 1", res.ExitCode())
	}
	t.Logf("lost %d of %d acknowledged elements", st.LostCount, st.OK)
}

// staleness returns the staleness figures of a level.
func staleness(t *testing.T, res *Result, level string) checker.LevelStaleness {
	t.Helper()
	st := checkerOf(t, res, "staleness").Stats.(checker.StaleStats)
	for _, l := range st.Levels {
		if l.Level == level {
			return l
		}
	}
	t.Fatalf("no staleness figures for level %s: %+v", level, st)
	return checker.LevelStaleness{}
}

// TestSetQuorumNoFaults: a healthy cluster at quorum loses nothing, and
// staleness is measured (and, R+W>N, zero).
func TestSetQuorumNoFaults(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "none")
	cfg.Time = Duration(8 * time.Second)
	parallel(t, &cfg, 3)
	res := run(t, cfg)
	set := checkerOf(t, res, "set")
	if st := set.Stats.(checker.SetStats); set.Valid != checker.Valid || st.LostCount != 0 || st.OK == 0 {
		t.Fatalf("set: %s", set.Summary)
	}
	l := staleness(t, res, "quorum")
	t.Logf("staleness at quorum: %d of %d reads stale", l.Stale, l.Reads)
	if l.Reads == 0 {
		t.Error("no reads measured")
	}
	if res.ExitCode() != ExitValid {
		t.Errorf("healthy run judged %v (exit %d)", res.Valid, res.ExitCode())
	}
}

// TestSetQuorumKill: killing nodes (SIGKILL, then restart) loses no
// acknowledged element at quorum.
func TestSetQuorumKill(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "kill")
	parallel(t, &cfg, 4)
	res := run(t, cfg)
	set := checkerOf(t, res, "set")
	st := set.Stats.(checker.SetStats)
	if st.LostCount != 0 || st.UnexpectedCount != 0 || set.Valid != checker.Valid {
		t.Fatalf("set under kill: %s", set.Summary)
	}
	l := staleness(t, res, "quorum")
	t.Logf("set under kill: %s; staleness at quorum %d/%d; verdict %v", set.Summary, l.Stale, l.Reads, res.Valid)
}

// TestSetOnePartition: at level one, elements acknowledged on either side
// of a partition are all there once the partition heals and the hints are
// delivered.
func TestSetOnePartition(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadSet, "one", "partition")
	parallel(t, &cfg, 5)
	res := run(t, cfg)
	set := checkerOf(t, res, "set")
	st := set.Stats.(checker.SetStats)
	if st.LostCount != 0 || st.UnexpectedCount != 0 || set.Valid != checker.Valid {
		t.Fatalf("set at one under partition: %s", set.Summary)
	}
	l := staleness(t, res, "one")
	t.Logf("staleness at one under partition: %d/%d reads stale (%.1f%%), %.1f versions and %.0f ms behind on average; hints drained %.1fs after the heal",
		l.Stale, l.Reads, 100*l.Fraction, l.Versions.Mean, l.AgeMs.Mean, res.Run.HintsWaitSeconds)
}

// TestSetAdaptiveQuorumFloorForcedChanges: an adaptive keyspace with a
// quorum floor, its configuration moved every two seconds by the force hook,
// under kill and partition: no acknowledged element is lost and no read is
// stale, across the configuration changes.
func TestSetAdaptiveQuorumFloorForcedChanges(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadSet, "adaptive", "kill,partition")
	cfg.Adaptive, cfg.AdaptiveMaxStale, cfg.TunerForce = "quorum", 0.001, Duration(2*time.Second)
	parallel(t, &cfg, 6)
	set, l, ops := runForced(t, cfg)
	epochs := map[uint64]bool{}
	for _, op := range ops {
		if op.Epoch > 0 {
			epochs[op.Epoch] = true
		}
	}
	if len(epochs) < 3 {
		t.Errorf("operations ran under %d configuration epochs; want the forced changes to have moved it several times", len(epochs))
	}
	t.Logf("adaptive, quorum floor, forced changes: %s; %d reads, 0 stale; %d epochs seen", set.Summary, l.Reads, len(epochs))
}

// TestConvergeRepairFixesDivergence: one node acknowledges replica writes
// without storing them during the fault windows, so its replicas miss
// writes that no hint will bring (it acknowledged them). Once the hints are
// delivered the replicas still disagree, and the convergence phase's repair
// pass (what `adaptkv keyspace repair` does) brings every replica to the
// newest version.
func TestConvergeRepairFixesDivergence(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "drop-writes:one")
	cfg.Time = Duration(8 * time.Second)
	cfg.NemesisOn = Duration(4 * time.Second)
	cfg.ConvergeTimeout = Duration(15 * time.Second)
	parallel(t, &cfg, 7)
	res := run(t, cfg)
	cr := res.Run.ConvergeRepair
	if cr == nil || cr.Disagreeing == 0 {
		t.Fatalf("convergence repair %+v; want a pass after replicas disagreed (did the drop-writes fault leave no divergence?)", cr)
	}
	if cr.Error != "" || cr.RecordsPushed == 0 {
		t.Fatalf("convergence repair %+v; want a pass that pushed the missed records", cr)
	}
	if conv := checkerOf(t, res, "convergence"); conv.Valid != checker.Valid {
		t.Fatalf("after the repair pass: %s", conv.Summary)
	}
	t.Logf("%d keys disagreed after hints; the pass pushed %d records in %.1fs", cr.Disagreeing, cr.RecordsPushed, cr.Seconds)
}

// TestSetAdaptiveForcedGrowAndShrink: as the forced-change test, with the
// keyspace allowed N from 3 to 5, so the forced moves grow N (streaming the
// data to the added replicas first) and shrink it back, under kill and
// partition: no acknowledged element is lost and no read is stale, whatever
// N the operations ran under.
func TestSetAdaptiveForcedGrowAndShrink(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadSet, "adaptive", "kill,partition")
	cfg.Adaptive, cfg.AdaptiveMaxStale, cfg.AdaptiveMaxRF, cfg.TunerForce = "quorum", 0.001, 5, Duration(2*time.Second)
	parallel(t, &cfg, 8)
	set, l, ops := runForced(t, cfg)
	ns := map[int]int{}
	for _, op := range ops {
		if op.Type == history.OK && op.N > 0 {
			ns[op.N]++
		}
	}
	if ns[5] == 0 || ns[3] == 0 {
		t.Errorf("operations by N: %v; want some under N=3 and some under N=5 (the forced moves did not grow the keyspace?)", ns)
	}
	t.Logf("adaptive, N 3..5, forced changes: %s; %d reads, 0 stale; operations by N %v", set.Summary, l.Reads, ns)
}

// runForced runs a set workload on an adaptive keyspace with forced
// configuration changes and fails the test if an acknowledged element was
// lost, one appeared that nobody added, or a read was stale; it returns the
// set checker, the staleness figures and the history.
func runForced(t *testing.T, cfg Config) (*checker.Result, checker.LevelStaleness, []history.Op) {
	t.Helper()
	res := run(t, cfg)
	set := checkerOf(t, res, "set")
	st := set.Stats.(checker.SetStats)
	if st.LostCount != 0 || st.UnexpectedCount != 0 || set.Valid != checker.Valid {
		t.Fatalf("set on an adaptive keyspace with forced changes: %s", set.Summary)
	}
	l := staleness(t, res, "adaptive")
	if l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("adaptive keyspace with a quorum floor and forced changes: %d of %d reads stale; want none", l.Stale, l.Reads)
	}
	ops, err := history.ReadFile(filepath.Join(cfg.Out, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	return set, l, ops
}

// TestRegisterAdaptiveFloorForcedKillPartition is issue 9's case A, shorter:
// an adaptive keyspace with a quorum floor, moved every two seconds by the
// force hook while one node is killed and the network is cut in halves in
// turn. Before configuration leases a coordinator on the minority side kept
// serving at an epoch the leader had moved two steps past (R=2 against a
// W=1 write, R+W = N), and reads went stale: `adaptkv jepsen` with these
// settings for 60 s was INVALID (7 of 2,659 reads stale, 2 keys not
// linearizable, seed 1). The register history must be linearizable and no
// read stale.
func TestRegisterAdaptiveFloorForcedKillPartition(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadRegister, "adaptive", "kill:one,partition:halves")
	cfg.Adaptive, cfg.AdaptiveMaxStale, cfg.TunerForce = "quorum", 0.001, Duration(2*time.Second)
	cfg.NemesisMode = "cycle"
	cfg.NemesisOn, cfg.NemesisOff = Duration(5*time.Second), Duration(5*time.Second)
	cfg.Time = Duration(30 * time.Second)
	cfg.Rate, cfg.Concurrency = 200, 8
	parallel(t, &cfg, 9)
	res := run(t, cfg)
	lin := checkerOf(t, res, "linearizable")
	l := staleness(t, res, "adaptive")
	if lin.Valid != checker.Valid || l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("adaptive keyspace, quorum floor, forced changes under kill and partition: %s; %d of %d reads stale", lin.Summary, l.Stale, l.Reads)
	}
	t.Logf("linearizable: %s; %d reads, 0 stale", lin.Summary, l.Reads)
}

// TestSessionClockReadThenWrite: under clock skew, each client moving to
// the next node at its first read after a write (so that the node
// coordinating its next writes is often one that never stored the key's
// last write, and not even a replica of it), no client's write made after
// its read through the same node loses to the version it read, and the
// sessions read their writes. Before coordinators observed the versions
// they read, a run of this case lost 24 of 731 read-then-writes and showed
// 39 read-your-writes violations.
func TestSessionClockReadThenWrite(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSession, "quorum", "clock:minority")
	cfg.Clients = ClientsHop
	cfg.Time = Duration(10 * time.Second)
	cfg.NemesisOn, cfg.NemesisOff = Duration(4*time.Second), Duration(time.Second)
	// Few clients at a high rate: a client's writes through two nodes come
	// tens of milliseconds apart, within the nemesis's skews (64 ms up).
	cfg.Rate, cfg.Concurrency, cfg.SessionKeys = 200, 2, 1
	cfg.ConvergeTimeout = Duration(10 * time.Second)
	parallel(t, &cfg, 10)
	res := run(t, cfg)
	sess := checkerOf(t, res, "session")
	st := sess.Stats.(checker.SessionStats)
	t.Logf("session: %s", sess.Summary)
	if st.ReadThenWrites == 0 {
		t.Fatalf("no read-then-write through one node was checked: %s", sess.Summary)
	}
	if sess.Valid != checker.Valid || st.LostWrites != 0 || st.ReadYourWrites != 0 {
		for _, a := range sess.Anomalies[:min(3, len(sess.Anomalies))] {
			t.Log(a.Description)
		}
		t.Fatalf("session checker under clock skew: %s", sess.Summary)
	}
}

// TestSetQuorumMembershipAddKill: nodes join the running cluster
// (membership:add: n6, then n7, each started with --bootstrap-expect 0 and
// streamed its ranges) while, in the same windows, a node is SIGKILLed: no
// acknowledged element is lost, none appears that nobody added, no read at
// quorum is stale, and both added nodes end normal on the ring.
func TestSetQuorumMembershipAddKill(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "membership:add,kill:one")
	parallel(t, &cfg, 11)
	res := run(t, cfg)
	checkMembershipRun(t, res, "quorum", 2)
}

// checkMembershipRun fails the test unless the set held (nothing lost or
// unexpected), no read at level was stale, the run was valid, and added
// nodes joined and became normal.
func checkMembershipRun(t *testing.T, res *Result, level string, added int) {
	t.Helper()
	set := checkerOf(t, res, "set")
	st := set.Stats.(checker.SetStats)
	l := staleness(t, res, level)
	t.Logf("set: %s; %d of %d reads at %s stale; membership: %s", set.Summary, l.Stale, l.Reads, level, strings.Join(res.Run.Membership, "; "))
	if st.LostCount != 0 || st.UnexpectedCount != 0 || set.Valid != checker.Valid || st.OK == 0 {
		t.Fatalf("set while nodes join under kill: %s", set.Summary)
	}
	if l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("%d of %d reads at %s stale while nodes joined; want none", l.Stale, l.Reads, level)
	}
	// Each add writes its own key once, so a key whose replicas still
	// disagree once the hints are delivered must be an add of unknown
	// outcome (its coordinator killed mid-write). More than those means a
	// join left its new replicas without the data: a join that did not
	// stream (192 such keys of 805 in a build that skipped it) passes the
	// other checks, because the convergence phase's repair pass then
	// copies the data over.
	if cr := res.Run.ConvergeRepair; cr != nil && cr.Disagreeing > st.Info {
		t.Fatalf("%d keys disagreed once the hints were delivered, more than the %d adds of unknown outcome that could explain them: the joined nodes lack data they own", cr.Disagreeing, st.Info)
	}
	joined := 0
	for _, m := range res.Run.Membership {
		if strings.Contains(m, "normal on the ring") && !strings.Contains(m, "failed") {
			joined++
		}
	}
	if joined != added || len(res.Run.Hosts) != res.Run.Nodes+added {
		t.Fatalf("membership changes %q, hosts %v; want %d nodes added and normal", res.Run.Membership, res.Run.Hosts, added)
	}
	if res.ExitCode() != ExitValid {
		t.Fatalf("run judged %v (exit %d): %v", res.Valid, res.ExitCode(), res.HarnessErrors)
	}
}

// TestSetQuorumMembershipDecommissionKill: nodes are decommissioned from
// the running cluster (membership:decommission, through `adaptkv node
// decommission`: 5 nodes to 4, then 3, the keyspace's N) while, in the
// same windows, another node is SIGKILLed: no acknowledged element is
// lost, none appears that nobody added, no read at quorum is stale, and
// each decommissioned node left the ring and ended its own process.
func TestSetQuorumMembershipDecommissionKill(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSet, "quorum", "membership:decommission,kill:one")
	parallel(t, &cfg, 12)
	res := run(t, cfg)
	checkShapeRun(t, res, "quorum", map[string]int{"decommission": 2})
}

// TestRegisterAdaptiveMembershipReplacePartition: on an adaptive keyspace
// with a quorum floor, its configuration moved every two seconds by the
// force hook, a node is SIGKILLed and a new one started in its place with
// --replace (membership:replace) while the network is cut in halves: the
// register history is linearizable, no read is stale, and each replacement
// became normal while the dead node left the ring.
func TestRegisterAdaptiveMembershipReplacePartition(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadRegister, "adaptive", "membership:replace,partition:halves")
	cfg.Adaptive, cfg.AdaptiveMaxStale, cfg.TunerForce = "quorum", 0.001, Duration(2*time.Second)
	cfg.Rate, cfg.Concurrency = 150, 8
	parallel(t, &cfg, 13)
	res := run(t, cfg)
	lin := checkerOf(t, res, "linearizable")
	l := staleness(t, res, "adaptive")
	t.Logf("linearizable: %s; %d of %d reads stale; membership: %s", lin.Summary, l.Stale, l.Reads, strings.Join(res.Run.Membership, "; "))
	if lin.Valid != checker.Valid || l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("replace under partitions on an adaptive keyspace with a quorum floor: %s; %d of %d reads stale", lin.Summary, l.Stale, l.Reads)
	}
	checkShapeRun(t, res, "adaptive", map[string]int{"replace": 2})
}

// checkShapeRun fails the test unless the run was valid, no read at level
// was stale, the set (for a set run) lost nothing, and the membership
// changes settled as want says (action: how many): a decommissioned node
// left the ring and its process exited by itself; a replacement became
// normal and its dead node left.
func checkShapeRun(t *testing.T, res *Result, level string, want map[string]int) {
	t.Helper()
	if set := res.Checker("set"); set != nil {
		st := set.Stats.(checker.SetStats)
		t.Logf("set: %s", set.Summary)
		if st.LostCount != 0 || st.UnexpectedCount != 0 || set.Valid != checker.Valid || st.OK == 0 {
			t.Fatalf("set while the cluster changed shape: %s", set.Summary)
		}
	}
	l := staleness(t, res, level)
	t.Logf("%d of %d reads at %s stale; membership: %s", l.Stale, l.Reads, level, strings.Join(res.Run.Membership, "; "))
	if l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("%d of %d reads at %s stale while the cluster changed shape; want none", l.Stale, l.Reads, level)
	}
	got := map[string]int{}
	for _, m := range res.Run.Membership {
		action, rest, _ := strings.Cut(m, " ")
		switch {
		case strings.Contains(m, "failed"):
		case action == "decommission" && strings.Contains(rest, "left the ring") && strings.Contains(rest, "exited by itself"):
			got[action]++
		case action == "replace" && strings.Contains(rest, "normal on the ring") && strings.Contains(rest, "left the ring"):
			got[action]++
		}
	}
	for action, n := range want {
		if got[action] != n {
			t.Fatalf("membership changes %q: %d %s settled, want %d", res.Run.Membership, got[action], action, n)
		}
	}
	if res.ExitCode() != ExitValid {
		t.Fatalf("run judged %v (exit %d): %v", res.Valid, res.ExitCode(), res.HarnessErrors)
	}
}

// TestSessionSDKOnePartition: every client is an SDK session (its token
// goes with each read and write, and with the client when it moves to the
// next node at its first read after a write), all at `one`, under
// partitions: no read-your-writes or monotonic-reads violation, no write
// ordered below a version its session had read, even through another
// node. Reads no replica in reach can serve fail (SESSION_BEHIND) rather
// than answer older data. Without sessions the same run shows violations
// (see README: the sessions row of the consistency table).
func TestSessionSDKOnePartition(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadSession, "one", "partition:halves")
	cfg.Clients = ClientsHop
	cfg.Sessions = true
	cfg.Time = Duration(10 * time.Second)
	cfg.NemesisOn, cfg.NemesisOff = Duration(4*time.Second), Duration(time.Second)
	cfg.Rate, cfg.Concurrency, cfg.SessionKeys = 200, 4, 1
	cfg.ConvergeTimeout = Duration(10 * time.Second)
	parallel(t, &cfg, 10)
	res := run(t, cfg)
	sess := checkerOf(t, res, "session")
	st := sess.Stats.(checker.SessionStats)
	t.Logf("session: %s", sess.Summary)
	if st.Reads == 0 || st.ReadThenWrites == 0 {
		t.Fatalf("nothing checked: %s", sess.Summary)
	}
	if sess.Valid != checker.Valid || st.ReadYourWrites != 0 || st.MonotonicReads != 0 || st.LostWrites != 0 || st.OtherNodeBelow != 0 {
		for _, a := range sess.Anomalies[:min(3, len(sess.Anomalies))] {
			t.Log(a.Description)
		}
		t.Fatalf("SDK sessions at one under partition: %s; %d read-then-writes through another node got a version below the read", sess.Summary, st.OtherNodeBelow)
	}
}

// casCounts tallies a cas-register history's cas outcomes.
type casCounts struct{ applied, notApplied, failed, info, reads, writes int }

func countCas(t *testing.T, cfg Config) casCounts {
	t.Helper()
	ops, err := history.ReadFile(filepath.Join(cfg.Out, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	var c casCounts
	for _, p := range history.Pairs(ops) {
		switch {
		case p.Invoke.F == history.FRead && p.Type() == history.OK:
			c.reads++
		case p.Invoke.F == history.FWrite && p.Type() == history.OK:
			c.writes++
		case p.Invoke.F != history.FCas:
		case p.Type() == history.OK:
			c.applied++
		case p.Type() == history.Fail && p.Completion.NotApplied:
			c.notApplied++
		case p.Type() == history.Fail:
			c.failed++
		default:
			c.info++
		}
	}
	return c
}

// checkCasRegister requires the cas-register run to be valid (the
// Porcupine check of reads, writes, cas that applied and cas that did not,
// with the current value each reported; no phantom; no stale
// linearizable read) and not vacuous: cas both applied and not, reads
// answered.
func checkCasRegister(t *testing.T, cfg Config, res *Result) {
	t.Helper()
	c := countCas(t, cfg)
	lin := checkerOf(t, res, "linearizable")
	t.Logf("%s; cas: %d applied, %d not applied, %d failed (contended or refused), %d unknown; %d reads, %d writes ok",
		lin.Summary, c.applied, c.notApplied, c.failed, c.info, c.reads, c.writes)
	if c.applied == 0 || c.notApplied == 0 || c.reads == 0 || c.writes == 0 {
		t.Fatalf("the run checked too little: %+v", c)
	}
	if res.Valid != checker.Valid {
		for _, ch := range res.Checkers {
			if ch.Valid != checker.Valid {
				t.Errorf("%s: %v: %s", ch.Name, ch.Valid, ch.Summary)
				for _, a := range ch.Anomalies[:min(3, len(ch.Anomalies))] {
					t.Log(a.Description)
				}
			}
		}
		t.Fatalf("cas-register at linearizable judged %v (harness errors: %v)", res.Valid, res.HarnessErrors)
	}
	if l := staleness(t, res, "linearizable"); l.Stale != 0 || l.Reads == 0 {
		t.Fatalf("%d of %d linearizable reads stale", l.Stale, l.Reads)
	}
}

// TestCasRegisterLinearizablePartition: reads, writes and compare-and-sets
// at linearizable while the network is cut in halves: the history of
// every key is linearizable with cas in the model, a cas that did not
// apply found a value other than the one it expected and reported the
// register's value.
func TestCasRegisterLinearizablePartition(t *testing.T) {
	needCluster(t)
	needNet(t)
	cfg := testConfig(t, WorkloadCasRegister, "linearizable", "partition:halves")
	cfg.Keys, cfg.OpsPerKey = 6, 60
	parallel(t, &cfg, 14)
	res := run(t, cfg)
	checkCasRegister(t, cfg, res)
}

// TestCasRegisterLinearizableKillClock: the same under SIGKILLs and clock
// skews of seconds in both directions (Paxos orders a key's writes by
// ballot and raises each version above the one decided against, so no
// clock can reorder them). The seed is the first whose schedule skews
// every clock by a second or more.
func TestCasRegisterLinearizableKillClock(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadCasRegister, "linearizable", "kill,clock")
	cfg.Keys, cfg.OpsPerKey = 6, 60
	cfg.ClockMax = Duration(8 * time.Second)
	cfg.Seed = secondsSkewSeed(t, cfg)
	parallel(t, &cfg, 15)
	res := run(t, cfg)
	checkCasRegister(t, cfg, res)
}

// secondsSkewSeed returns the first seed from cfg.Seed whose fault
// schedule skews clocks, each by at least a second.
func secondsSkewSeed(t *testing.T, cfg Config) uint64 {
	t.Helper()
	for seed := cfg.Seed; seed < cfg.Seed+100; seed++ {
		cfg.Seed = seed
		plan, err := MakePlan(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var skews []string
		ok := true
		for _, w := range plan.Schedule {
			for _, f := range w.Faults {
				if f.Kind != "clock" {
					continue
				}
				d, err := time.ParseDuration(f.Offset)
				if err != nil {
					t.Fatalf("clock offset %q: %v", f.Offset, err)
				}
				skews = append(skews, f.Offset)
				ok = ok && d.Abs() >= time.Second
			}
		}
		if ok && len(skews) > 0 {
			t.Logf("seed %d: clock skews %v", seed, skews)
			return seed
		}
	}
	t.Fatal("no seed in 100 skews every clock by a second or more")
	return 0
}

// TestCasRegisterLinearizableSlowNode: one node at a time answers its peers
// late (up to 500 ms per reply) while the gray-failure detector runs (on by
// default, 2 s windows): the flagged node's demotion in read paths must
// not cost linearizability or a stale read.
func TestCasRegisterLinearizableSlowNode(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, WorkloadCasRegister, "linearizable", "slow")
	cfg.Keys, cfg.OpsPerKey = 6, 60
	parallel(t, &cfg, 16)
	res := run(t, cfg)
	checkCasRegister(t, cfg, res)
}
