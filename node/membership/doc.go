// Package membership adapts hashicorp/memberlist to adaptkv: it joins the
// gossip cluster, publishes this node's metadata (ID, addresses, zone), and
// turns memberlist's callbacks into an immutable View of the members and
// their states, from which the ring is rebuilt. It is the only package that
// imports memberlist.
//
// A member that fails stays in the View (state dead) and keeps its place on
// the ring, so that its keys are not moved to other nodes and writes for it
// become hints; only a graceful leave removes it.
//
// memberlist never contacts a member it declared dead again once the news
// has spread, so a healed partition would leave the cluster split for good.
// A reconnector (Config.ReconnectInterval, as Serf's for Consul) rejoins the
// dead members, for up to Config.ReconnectTimeout, and the seeds given to
// Join whenever some member is dead or this node is alone.
//
// # Imports
//
// membership imports memberlist and the ring package (it builds each View's
// ring), nothing else of adaptkv; node is its only user. Keep memberlist's
// types out of its API, so that no other package needs to import it.
//
// # Concurrency
//
// A *Membership is safe for concurrent use. A View is immutable once
// published: View returns the latest through an atomic pointer, without a
// lock, so the request path may call it on every request and keep what it
// got. memberlist's callbacks arrive on its own goroutines; each updates the
// member table under a mutex and then publishes a fresh View, one publish at
// a time, so Config.OnChange sees the views in order and is never called
// concurrently (it must not block: gossip waits for it). The reconnector is
// one goroutine, started by Start and ended by Shutdown (or Leave), which
// waits for it.
package membership
