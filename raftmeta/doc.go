// Package raftmeta replicates Mosaic's metadata (image records and, as the
// system grows, members, tasks, secrets and cluster membership) with
// hashicorp/raft, and implements engine's metadata interfaces on top of it.
//
// Shape (after rqlite and consul):
//   - fsm.go is a thin raft.FSM over apply.go, a stateless dispatcher that
//     applies typed, versioned commands (command.go) to an in-memory state
//     (state.go). Apply is deterministic: the proposer picks IDs, timestamps
//     and revisions; Apply never reads a clock or a random source.
//   - Snapshots capture an immutable view of the state; Persist streams a
//     header and type-tagged records; Restore builds fresh state and swaps
//     it in (snapshot.go).
//   - logstore.go is a Pebble-backed raft.LogStore and raft.StableStore
//     that syncs every append, so an acknowledged entry survives kill -9.
//
// Reads are linearizable unless the context asks for a local read
// (engine.LocalRead): the leader confirms its leadership before serving.
//
// A Node is safe for concurrent use.
package raftmeta
