// Package replication spreads chunks across the storage nodes of a Mosaic
// cluster and finds them again.
//
//   - Placement (placement.go): each chunk's owners are the first R storage
//     voters ranked by rendezvous hashing of (node ID, ChunkID); R is 3 by
//     default, fewer in a smaller cluster. Every node computes the same
//     ranking from the replicated node registry, with no coordination, and a
//     membership change moves only the chunks whose top R changed.
//   - Store (store.go) is an engine.ChunkStore decorator over the local
//     store. Put writes a chunk to its local owner slot and queues it for
//     the remote owners, whose pushers send batches (claim, then put only
//     what is missing) while the upload streams on. Sync is the upload's
//     durability barrier generalised: it waits for every queued push, syncs
//     every owner, re-places chunks an unreachable owner did not take on
//     the next nodes of their ranking, and fails unless every chunk has R
//     durable copies. Get reads locally, then fetches from the owners in
//     rank order (then from any node), verifying every byte against the ID.
//   - Fetcher (fetch.go) is that read path alone: a read-only ChunkStore
//     that fetches by ChunkID from owners with failover (for hosts that own
//     no chunks, such as `mosaic mount --cluster`).
//   - Peer (peer.go) is the receiving side the internal HTTP endpoints call:
//     it verifies received chunks, stores them, syncs on request, and
//     protects claimed chunks from local GC for a lease (a remote upload
//     is relying on them).
//   - Repairer (repair.go) walks the live manifests after every membership
//     change and periodically, and pulls the chunks this node owns but
//     lacks, restoring R copies after a node is removed and moving data to
//     a node that joins. Progress shows in `mosaic cluster status`.
//
// The wire formats between nodes belong to this package (wire.go); package
// api only authenticates and routes. All types are safe for concurrent use.
package replication
