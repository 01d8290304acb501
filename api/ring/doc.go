// Package ring places keys on replicas: a consistent-hash ring with virtual
// nodes and zone-aware preference lists.
//
// # Design
//
// Every member owns many points ("virtual nodes", vnodes) on a 64-bit hash
// ring, and a key is stored by the first distinct members found walking
// clockwise from the key's token. This is the scheme of Dynamo (DeCandia et
// al., SOSP '07) §4.2, chosen for the same two reasons given there:
//
//   - Balance. With one point per member the arcs between points are
//     exponentially distributed and the largest owner holds several times its
//     fair share; with V points per member the relative spread of ownership
//     shrinks roughly as 1/sqrt(V). DefaultVnodes documents the measured
//     numbers.
//   - Minimal movement. A vnode's token depends only on its member's ID and
//     its index, never on who else is in the ring. Adding a member therefore
//     only inserts that member's points: a key changes primary only if the new
//     member becomes its primary, and about 1/N of the keys move, taken from
//     every old member rather than from one neighbour that would then also
//     carry the whole transfer.
//
// A key's token is Token(keyspace, key), so the same key in two keyspaces is
// placed independently; keyspace names must not contain a NUL byte (the
// separator), which the storage layer already requires.
//
// # Zones
//
// When any member has a non-empty Zone, a preference list first takes the
// first member of each zone not yet used, in ring order, until it has n
// members or every zone is used; then it fills the remaining slots with the
// next distinct members in ring order. This is the rule of Cassandra's
// NetworkTopologyStrategy: losing a zone loses at most ceil(n/zones) replicas
// of any key. Zone-distinct members come first, so a coordinator that contacts
// a prefix of the list (a quorum, say) still spreads over zones. A member
// with an empty Zone in a zoned ring is in the zone named "".
//
// # Lookups
//
// The vnode tokens are kept in one sorted []uint64 searched by binary search,
// with the owners in a parallel []int32. A ring is immutable: a membership
// change builds a new Ring (O(V log V) for V vnodes, about 3 ms for 100
// members at DefaultVnodes) and callers swap a pointer. That is why no balanced
// tree or skip list is needed: they would make changes incremental at the
// price of pointer chasing on every lookup, and lookups are the hot path
// while membership changes are rare. A fixed table of equal partitions
// (Dynamo §6.2 strategy 3) would give O(1) lookups but couples the partition
// count to the cluster size. With 256 vnodes per member the search is
// 8 + log2(N) comparisons over contiguous memory; a whole lookup, hashing
// included, costs under 100 ns at 100 members.
//
// # Concurrency
//
// A Ring is never modified after New, so any number of goroutines may use it
// at once. The package does no I/O, reads no clock and starts no goroutines:
// the same members and vnode count always give the same placement.
//
// # Who uses it, and what it may import
//
// Placement is part of the API: the servers (replication, node and its
// membership), the SDK (client, which routes each key to a replica) and the
// Jepsen harness must all compute the same preference lists, so the package
// lives under api, beside the protocol, and the SDK can use it without
// importing any server package. It imports only the standard library and
// xxhash, and must stay that way; anything that needs the server's state
// (liveness, epochs, keyspace configuration) belongs to its callers.
package ring
