package ship

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// magic starts every manifest, before its format's version.
const magic = "BURLAMAN"

const manifestVersion = 1

// Limits on what a manifest may declare, so that a corrupt one fails to parse
// rather than asks for gigabytes.
const (
	maxTable   = 1 << 20
	maxPacks   = 1 << 16
	maxBases   = 256
	maxProgram = 8 << 30
)

// Manifest is what one shipped executable is made of.
type Manifest struct {
	// Size and Digest are the executable's length and SHA-256.
	Size   int64
	Digest [32]byte
	// Packs are the SHA-256 digests of the packs that hold its chunks.
	Packs [][32]byte
	// File lists the executable's chunks in order, as indexes into Table.
	File []int
	// Table holds each chunk the executable is made of, and each chunk a delta
	// among them rests on, once.
	Table []Entry
}

// Entry is one chunk of a Manifest's table, and where its encoding is.
type Entry struct {
	ID   ID
	Pack int // index into Manifest.Packs
	Off  int // where the encoding starts in the pack
	N    int // the encoding's length
	Size int // the chunk's length
	Kind byte
	// A delta's window is the chunks Bases (indexes into the table) end to end,
	// from Skip, for WindowLen bytes.
	Bases     []int
	Skip      int
	WindowLen int
}

// PackDigests are the hex digests of the manifest's packs.
func (m *Manifest) PackDigests() []string {
	out := make([]string, len(m.Packs))
	for i, p := range m.Packs {
		out[i] = hex.EncodeToString(p[:])
	}
	return out
}

// encode serialises m, compressed.
func (m *Manifest) encode() []byte {
	b := append([]byte(magic), manifestVersion)
	b = binary.AppendUvarint(b, uint64(m.Size))
	b = append(b, m.Digest[:]...)
	b = binary.AppendUvarint(b, uint64(len(m.Packs)))
	for _, p := range m.Packs {
		b = append(b, p[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.File)))
	for _, i := range m.File {
		b = binary.AppendUvarint(b, uint64(i))
	}
	b = binary.AppendUvarint(b, uint64(len(m.Table)))
	for _, e := range m.Table {
		b = append(b, e.ID[:]...)
		for _, v := range []int{e.Pack, e.Off, e.N, e.Size} {
			b = binary.AppendUvarint(b, uint64(v))
		}
		b = append(b, e.Kind)
		if e.Kind == kindWhole {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(e.Bases)))
		for _, i := range e.Bases {
			b = binary.AppendUvarint(b, uint64(i))
		}
		b = binary.AppendUvarint(b, uint64(e.Skip))
		b = binary.AppendUvarint(b, uint64(e.WindowLen))
	}
	return encoder(zstd.SpeedDefault, nil).EncodeAll(b, nil)
}

// ErrBadManifest is returned for a manifest that does not parse or does not
// hold together.
var ErrBadManifest = errors.New("bad program manifest")

// ParseManifest reads a manifest as the blob store holds it.
func ParseManifest(data []byte) (*Manifest, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	raw, err := d.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	r := reader{b: raw}
	m, err := r.manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	return m, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail("truncated")
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// uint reads a uvarint of at most limit.
func (r *reader) uint(limit int, what string) int {
	if r.err != nil {
		return 0
	}
	if limit < 0 {
		r.fail("%s with nothing to refer to", what)
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated at %s", what)
		return 0
	}
	r.b = r.b[n:]
	if v > uint64(limit) {
		r.fail("%s %d is over %d", what, v, limit)
		return 0
	}
	return int(v)
}

// count reads a count of items of at least size bytes each, which the bytes
// left must hold: a corrupt count fails here rather than allocates.
func (r *reader) count(limit, size int, what string) int {
	n := r.uint(limit, what)
	if r.err == nil && n > len(r.b)/size {
		r.fail("%s %d in %d bytes", what, n, len(r.b))
		return 0
	}
	return n
}

func (r *reader) manifest() (*Manifest, error) {
	if string(r.bytes(len(magic))) != magic {
		return nil, errors.New("not a manifest")
	}
	if v := r.bytes(1)[0]; v != manifestVersion {
		return nil, fmt.Errorf("format version %d, not %d", v, manifestVersion)
	}
	m := &Manifest{Size: int64(r.uint(maxProgram, "size"))}
	copy(m.Digest[:], r.bytes(32))
	m.Packs = make([][32]byte, r.count(maxPacks, 32, "pack count"))
	for i := range m.Packs {
		copy(m.Packs[i][:], r.bytes(32))
	}
	m.File = make([]int, r.count(maxTable, 1, "chunk count"))
	for i := range m.File {
		m.File[i] = r.uint(maxTable, "chunk")
	}
	m.Table = make([]Entry, r.count(maxTable, 32+5, "table size"))
	for i := range m.Table {
		e := &m.Table[i]
		copy(e.ID[:], r.bytes(32))
		e.Pack = r.uint(len(m.Packs)-1, "pack")
		e.Off = r.uint(1<<40, "offset")
		e.N = r.uint(2*maxChunk, "encoded length")
		e.Size = r.uint(maxChunk, "chunk length")
		e.Kind = r.bytes(1)[0]
		switch e.Kind {
		case kindWhole:
			continue
		case kindDict, kindDiff:
		default:
			r.fail("unknown chunk encoding %d", e.Kind)
		}
		e.Bases = make([]int, r.count(maxBases, 1, "base count"))
		for j := range e.Bases {
			e.Bases[j] = r.uint(len(m.Table)-1, "base")
		}
		e.Skip = r.uint(maxBases*maxChunk, "skip")
		e.WindowLen = r.uint(maxBases*maxChunk, "window")
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the table", len(r.b))
	}
	var total int64
	for _, i := range m.File {
		if i >= len(m.Table) {
			return nil, fmt.Errorf("chunk %d of a table of %d", i, len(m.Table))
		}
		total += int64(m.Table[i].Size)
	}
	if total != m.Size {
		return nil, fmt.Errorf("chunks of %d bytes for a program of %d", total, m.Size)
	}
	if _, err := m.depths(); err != nil {
		return nil, err
	}
	return m, nil
}

// depths returns how long a chain of deltas each entry rests on, and fails on
// a chain longer than MaxDepth (a cycle is one) or a window outside its bases.
func (m *Manifest) depths() ([]int, error) {
	depth := make([]int, len(m.Table))
	state := make([]byte, len(m.Table)) // 0 new, 1 on the path, 2 done
	var visit func(i, level int) error
	visit = func(i, level int) error {
		switch {
		case state[i] == 2:
			return nil
		case state[i] == 1 || level > MaxDepth:
			return fmt.Errorf("chunk %d rests on a chain of deltas longer than %d", i, MaxDepth)
		}
		state[i] = 1
		e := &m.Table[i]
		span := 0
		for _, b := range e.Bases {
			if err := visit(b, level+1); err != nil {
				return err
			}
			depth[i] = max(depth[i], depth[b]+1)
			span += m.Table[b].Size
		}
		if e.Kind != kindWhole && (len(e.Bases) == 0 || e.Skip+e.WindowLen > span) {
			return fmt.Errorf("chunk %d's window of %d bytes from %d is outside its bases' %d", i, e.WindowLen, e.Skip, span)
		}
		if depth[i] > MaxDepth {
			return fmt.Errorf("chunk %d rests on a chain of deltas longer than %d", i, MaxDepth)
		}
		state[i] = 2
		return nil
	}
	for i := range m.Table {
		if err := visit(i, 0); err != nil {
			return nil, err
		}
	}
	return depth, nil
}
