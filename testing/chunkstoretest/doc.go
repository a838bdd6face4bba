// Package chunkstoretest is the conformance suite every engine.ChunkStore
// implementation runs (Run), and MemStore, an in-memory store that passes
// it: the baseline the ingest benchmarks compare Pebble against, and a
// store for tests that do not care about durability.
package chunkstoretest
