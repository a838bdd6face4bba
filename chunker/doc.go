// Package chunker cuts a byte stream into content-defined chunks with
// FastCDC (gear hash, normalized chunking), so that an insertion or deletion
// in the stream moves only the boundaries near it and the rest of the chunks
// keep their content, and so their IDs.
//
// The fingerprint at a byte depends only on the 64 bytes ending there (not
// on where the chunk began), which makes the scan fast: the first Min bytes
// of a chunk are skipped, four stretches of the stream are hashed by
// independent dependency chains the CPU runs in parallel, and with Align
// only the 64-byte window before each aligned offset is hashed at all.
// DefaultParams align cuts to 4 KiB (disk images are block-aligned);
// docs/chunking.md has the measurements behind the choice.
//
// Two forms share one boundary rule, and always cut a given stream at the
// same offsets:
//   - Cutter is a resumable scanner: the caller feeds it the stream in pieces
//     of any size (for example, the blocks an upload arrives in) and it says
//     where chunks end. It allocates nothing.
//   - Chunker reads an io.Reader and returns each chunk's bytes, valid until
//     the next call.
//
// The package depends on nothing else in Mosaic. Values are not safe for
// concurrent use; Params are immutable values.
package chunker
