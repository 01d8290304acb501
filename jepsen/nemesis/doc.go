// Package nemesis injects the Jepsen harness's faults: it parses the fault
// specifications, turns them into a schedule of fault windows that depends
// only on the seed (so a seed replays the same faults), and applies and
// undoes them on a cluster, recording every action in the history.
//
// Faults:
//
//	kill        SIGKILL nodes; restart them when the window ends
//	pause       SIGSTOP nodes; SIGCONT when the window ends
//	partition   iptables DROP rules between node addresses; shapes:
//	            halves (random bisection), ring (majorities ring: every
//	            node sees a majority, no two the same), one (isolate one
//	            node), bridge (two halves and a node that sees both)
//	clock       skew nodes' clocks through their test hook
//	slow        delay nodes' replies to peers through their test hook
//	drop-writes make nodes acknowledge replica writes without storing
//	            them: a deliberately broken store, to show lost writes
//	            are caught
//	membership  change the cluster's shape, one change per window (the
//	            cluster takes one topology change at a time); several
//	            actions may be given and take turns:
//	            membership:add (the default) starts the next node,
//	            n<k+1> on the next loopback address after k laid out,
//	            joining with --bootstrap-expect 0; the window's end waits
//	            until the ring (the metadata log) makes it normal.
//	            membership:decommission asks, through the other nodes,
//	            for a live node's decommission (`adaptkv node
//	            decommission ID`, as `adaptkv cluster remove` does); the
//	            window's end waits until every member that answers sees
//	            it left with no change in progress and its process has
//	            exited by itself, then it is removed for good. Never
//	            below ScheduleConfig.MinNodes (3, or the keyspace's N).
//	            membership:replace SIGKILLs a node, removes it for good,
//	            and starts the next node with --replace DEAD_ID; the
//	            window's end waits until the new node is normal and the
//	            dead one left. HealAll finishes a change that did not
//	            settle in its window. The schedule tracks the node set
//	            (adds at most to MaxNodes, IDs counting every node laid
//	            out), so later windows' faults strike the new nodes and
//	            never the removed ones; a window's other node faults
//	            spare the nodes its change names, and the changes pick
//	            among nodes no spec names explicitly.
//
// A fault may name its targets after a colon: kill:one, kill:minority,
// kill:majority, kill:all, kill:n2+n3, partition:ring, clock:n1. Without
// one, each window draws a target choice (or partition shape) at random.
//
// # Contract
//
// nemesis owns the fault vocabulary, the seeded schedule (Schedule, a pure
// function of its ScheduleConfig) and the Nemesis that applies it. It acts
// on the cluster only through the Jepsen cluster package (processes,
// network rules, the nodes' test hooks) and records through the history
// package; it imports nothing of the server or the SDK. Run follows the
// schedule on the caller's goroutine and leaves nothing active that it
// started; Active and Errors may be called from other goroutines meanwhile.
// The gossip watchers a partition starts end with their partition; Wait
// waits for them. HealAll undoes every fault whatever the schedule did, and
// is called after Run has returned.
package nemesis
