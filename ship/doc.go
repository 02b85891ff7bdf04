// Package ship moves a program's executable from a client to the nodes through
// the blob store, in content-defined chunks that versions share, so that a
// program changed by one line sends a small fraction of its bytes.
//
// The executable is cut into chunks where its content says (a rolling hash, as
// restic cuts files), so an edit moves the cuts near it and no others. A chunk a
// version shares with the last one the client sent is not sent again. Most of a
// Go executable still changes with a one-line edit: the code after it moves, and
// every address that points across the move changes, a few bytes in every few
// hundred. So a new chunk is sent as a delta against the bytes it replaces in the
// last version (the last version's bytes between the same unchanged neighbours):
// their bytewise difference when the two regions have the same length, or else
// the chunk compressed with those bytes as zstd's dictionary, whichever is
// smaller, or the chunk compressed alone when no delta is smaller.
//
// One upload is one pack (the new chunks' encodings, end to end) and one
// manifest: every chunk the executable is made of, and every chunk a delta among
// them rests on, each with the pack that holds it. A manifest names every pack
// its program needs, so the collector keeps a pack while any kept manifest names
// it. A chain of deltas is cut at MaxDepth: a chunk that would rest on a deeper
// one is sent whole.
//
// Debug information (the ELF .debug_* sections) is zeroed before the executable
// is cut: no node reads it, Go's stack traces come from the executable's own
// tables, and DWARF shifts with every edit in a way deltas follow badly.
package ship
