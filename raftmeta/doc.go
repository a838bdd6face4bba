// Package raftmeta replicates Mosaic's metadata (image records, the node
// registry and, as the system grows, members, tasks and secrets) with
// hashicorp/raft, and implements engine's metadata interfaces on top of it.
//
// Shape (after rqlite and consul):
//   - fsm.go is a thin raft.FSM over apply.go, a stateless dispatcher that
//     applies typed, versioned commands (command.go) to an in-memory state
//     (state.go). Apply is deterministic: the proposer picks IDs, timestamps
//     and revisions; Apply never reads a clock or a random source.
//   - Snapshots capture an immutable view of the state; Persist streams a
//     header and type-tagged records; Restore builds fresh state and swaps
//     it in (snapshot.go). Raft takes them on a schedule and truncates the log.
//   - logstore.go is a Pebble-backed raft.LogStore and raft.StableStore
//     that syncs every append, so an acknowledged entry survives kill -9.
//   - nodes.go is the node registry (commands 64–79): every node's Raft and
//     API address and role, which placement and forwarding read.
//   - cluster.go is membership: idempotent Join (a changed address is
//     removed, then added), JoinVia for a starting node, Remove, Leave.
//   - forward.go sends a follower's writes, read-index requests and
//     membership changes to the leader's internal HTTP endpoints (served by
//     package api, which calls back into the Node), authenticated with the
//     cluster secret. Commands are retried only when they certainly were not
//     applied.
//   - read.go makes reads linearizable with the read-index protocol: the
//     leader confirms leadership (after its post-election barrier) and
//     followers wait until they have applied the leader's index. Reads with
//     engine.LocalRead skip it.
//
// docs/cluster.md explains the design. A Node is safe for concurrent use.
package raftmeta
