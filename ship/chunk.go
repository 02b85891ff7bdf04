package ship

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
)

// The chunker's settings are part of the format: a client that cut with others
// would share no chunk with its last upload.
const (
	// polynomial is the rolling hash's, fixed so that every client cuts alike.
	polynomial  = chunker.Pol(0x3DA3358B4DC173)
	averageBits = 14 // chunks of 16 KiB on average
	minChunk    = 4 << 10
	maxChunk    = 128 << 10
	// minWindow is the least of the last version's bytes a delta is taken
	// against, on each side of the chunk's place in them.
	minWindow = 16 << 10
)

// MaxDepth is the longest chain of deltas a chunk may rest on: a chunk that
// would rest on one this deep is sent whole.
const MaxDepth = 8

// ID names a chunk: the SHA-256 of its content.
type ID [sha256.Size]byte

func (id ID) String() string { return fmt.Sprintf("%x", id[:6]) }

// span is a chunk's place in an executable.
type span struct {
	off, n int
	id     ID
}

// cut splits b into content-defined chunks.
func cut(b []byte) []span {
	c := chunker.NewWithBoundaries(bytes.NewReader(b), polynomial, minChunk, maxChunk)
	c.SetAverageBits(averageBits)
	buf := make([]byte, maxChunk)
	var out []span
	off := 0
	for {
		ch, err := c.Next(buf)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			panic(fmt.Sprintf("ship: cut an in-memory executable: %v", err)) // a bytes.Reader does not fail
		}
		out = append(out, span{off: off, n: int(ch.Length), id: sha256.Sum256(ch.Data)})
		off += int(ch.Length)
	}
}

// How a chunk is encoded in its pack.
const (
	kindWhole = 0 // zstd alone
	kindDict  = 1 // zstd with the window as a raw dictionary
	kindDiff  = 2 // zstd of the bytewise difference from the window, as long as the chunk
)

// encoderWindow is a power of two over a chunk and the largest window.
const encoderWindow = 1 << 20

// encoder makes a zstd encoder; one is made per dictionary.
func encoder(level zstd.EncoderLevel, dict []byte) *zstd.Encoder {
	// A window that holds a dictionary and a chunk, not zstd's default of 8 MiB,
	// which each encoder made for a dictionary would allocate and clear.
	opts := []zstd.EOption{zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(encoderWindow)}
	if dict != nil {
		opts = append(opts, zstd.WithEncoderDictRaw(1, dict))
	}
	e, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		panic(fmt.Sprintf("ship: zstd encoder: %v", err)) // only bad options fail
	}
	return e
}

// newDecoder makes a zstd decoder, with dict as its raw dictionary if not nil.
func newDecoder(dict []byte) (*zstd.Decoder, error) {
	opts := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(uint64(maxChunk) * 2)}
	if dict != nil {
		opts = append(opts, zstd.WithDecoderDictRaw(1, dict))
	}
	return zstd.NewReader(nil, opts...)
}

// decode appends the chunk that enc encodes to dst, which is empty and has room
// for it, with d a decoder with the window as its dictionary for kindDict and
// window the bytes a delta rests on, checking that the chunk has size bytes.
func decode(d *zstd.Decoder, kind byte, enc, window, dst []byte, size int) ([]byte, error) {
	out, err := d.DecodeAll(enc, dst)
	if err != nil {
		return nil, err
	}
	if len(out) != size {
		return nil, fmt.Errorf("decoded %d bytes, not %d", len(out), size)
	}
	switch kind {
	case kindWhole, kindDict:
	case kindDiff:
		if len(window) != size {
			return nil, fmt.Errorf("a difference of %d bytes from a window of %d", size, len(window))
		}
		for i := range out {
			out[i] += window[i]
		}
	default:
		return nil, fmt.Errorf("unknown chunk encoding %d", kind)
	}
	return out, nil
}
