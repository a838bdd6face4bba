// Package pebblestore implements engine.ChunkStore (and engine.GCStore) on
// Pebble. Each chunk is one key, "c" + its 32-byte ID, whose value is the
// engine's chunk encoding (header + zstd frame or raw bytes). Every Get
// decodes and verifies the chunk against its ID before returning it.
//
// Durability: Put writes without syncing the WAL; Sync issues one synced
// WAL write, which (the WAL being sequential) makes every earlier Put
// durable. A Has that sees a chunk may see it before it is durable; callers
// that rely on it call Sync before publishing anything that refers to it.
//
// A Store is safe for concurrent use.
package pebblestore
