// Package shape is the scale-out and scale-in check of issue 11, reached
// as `adaptkv bench --scenario shape`: it starts three pebble node
// processes, loads keys at quorum, then adds nodes one at a time and
// decommissions nodes one at a time while a writer keeps writing at
// quorum. After each change it reads every acknowledged key at quorum
// (counting missing and stale answers) and checks, node by node through
// Admin.LocalGet and Admin.CleanupKeyspace, that each node's own storage
// holds exactly the keys it owns once cleanup has run. It writes the
// figures to results.md and results.json and fails when a check does.
package shape
