// Package chunker cuts a byte stream into content-defined chunks with
// FastCDC (gear hash, normalized chunking), so that an insertion or deletion
// in the stream moves only the boundaries near it and the rest of the chunks
// keep their content, and so their IDs.
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
