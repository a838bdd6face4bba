// Package pebblestore implements engine.ChunkStore (and engine.GCStore) on
// Pebble. Each chunk has two keys: "c" + its 32-byte ID, whose value is the
// engine's chunk encoding (header + zstd frame or raw bytes) and which
// Pebble keeps in blob files, and "m" + ID, a 16-byte record (sizes, first
// write) that Has and ListChunks read without touching chunk bodies. Every
// Get decodes and verifies the chunk against its ID before returning it.
//
// Durability: Pebble runs without a WAL. Put reaches a memtable; Sync
// flushes the memtables (sstables and blob files synced, then the MANIFEST),
// which makes every earlier Put durable, whoever made it. A Has that sees a
// chunk may see it before it is durable; callers that rely on it call Sync
// before publishing anything that refers to it. docs/storage.md states the
// rules.
//
// The store is also the node's engine.StreamMemo (memo.go): the digests of
// ingested streams, keyed by first chunk and manifest root, dropped when
// the root chunk is deleted.
//
// A Store is safe for concurrent use.
package pebblestore
