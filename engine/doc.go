// Package engine is the vocabulary and the domain logic of Mosaic: content
// addresses (ChunkID), manifests, image records and their Glance state
// machine, the ingest and read paths, garbage collection of chunks
// (Collector, Pins), storage statistics, and the small interfaces the rest
// of the system implements (ChunkStore, GCStore, ImageStore, SecretStore).
// It also holds the key manager (KeyManager: certificates per project, one
// policy function) and image signature verification (SignatureSpec at
// upload, SignatureGate before an open, see docs/signing.md).
//
// engine depends only on chunker among Mosaic's packages. Storage back ends
// (engine/pebblestore), the Raft metadata layer (raftmeta), the HTTP edge
// (api) and the FUSE edge (fusefs) depend on engine and never on each other;
// cmd/mosaic wires them together.
//
// Guarantees:
//   - Every chunk returned by a read path has been verified against its
//     BLAKE3-256 ID; no unverified byte is ever returned.
//   - An image record never points at bytes that are not durable: ingest
//     syncs the chunk store once before committing the manifest root.
//   - Garbage collection never deletes a chunk a live image or an upload in
//     flight on this node refers to: uploads pin chunks until their record
//     is committed, and a collection keeps pins released while it runs.
//     docs/storage.md states the rules.
//
// Unless a type's documentation says otherwise, exported types are safe for
// concurrent use.
package engine
