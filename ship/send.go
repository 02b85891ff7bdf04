package ship

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
)

// Sender ships executables to a blob store for one tenant, and keeps the last
// versions it sent (or found there) in Dir, so that the next sends only what
// changed. Dir may be shared by senders to many stores and by many processes.
type Sender struct {
	Blobs  blob.Store
	Tenant string
	// Dir keeps the last versions, each as its executable and its manifest; ""
	// keeps none, so every version is sent whole.
	Dir string
	// Keep is how many versions Dir keeps (default 4): a client that runs a few
	// programs in turn sends each one's changes against its own last version.
	Keep int
}

// Sent is what one Send wrote.
type Sent struct {
	// Bytes went to the blob store: the pack of new chunks and the manifest.
	Bytes int64
	// Chunks is how many the executable is cut into; New of them were sent, and
	// Deltas of those as deltas.
	Chunks, New, Deltas int
	// Base is the digest of the version the deltas rest on, or "".
	Base string
	// Found is true when the store had the executable already: nothing was sent.
	Found bool
}

// Send ships program (as Strip left it) under its SHA-256 hex digest, unless the
// store has it.
func (s *Sender) Send(ctx context.Context, program []byte, digest string) (Sent, error) {
	h, err := hex.DecodeString(digest)
	if err != nil || len(h) != 32 || sha256.Sum256(program) != [32]byte(h) {
		return Sent{}, fmt.Errorf("ship: %q is not the program's SHA-256", digest)
	}
	key := job.ManifestKeyFor(s.Tenant, digest)
	if data, err := readBlob(ctx, s.Blobs, key); err == nil {
		// Another client sent it, or this one did from another process: keep it
		// as a base for the next version.
		s.keep(program, digest, data)
		return Sent{Found: true}, nil
	} else if !errors.Is(err, blob.ErrNotFound) {
		return Sent{}, fmt.Errorf("look up program %s: %w", digest[:12], err)
	}
	spans := cut(program)
	base := s.base(ctx, spans)
	m, pack, sent := build(program, spans, base)
	m.Digest = [32]byte(h)
	if len(pack) > 0 {
		ps := sha256.Sum256(pack)
		m.Packs = append(m.Packs, ps)
		if err := s.Blobs.Put(ctx, job.PackKeyFor(s.Tenant, hex.EncodeToString(ps[:])), bytes.NewReader(pack)); err != nil {
			return Sent{}, fmt.Errorf("ship program %s: %w", digest[:12], err)
		}
	}
	data := m.encode()
	if err := s.Blobs.Put(ctx, key, bytes.NewReader(data)); err != nil {
		return Sent{}, fmt.Errorf("ship program %s: %w", digest[:12], err)
	}
	sent.Bytes = int64(len(pack) + len(data))
	s.keep(program, digest, data)
	return sent, nil
}

// Shipped reports whether the store holds the program with the given digest and
// Dir keeps it as a base for the next version, so that Send would send nothing
// and keep nothing new: a program run again unchanged need not be read.
func (s *Sender) Shipped(ctx context.Context, digest string) (bool, error) {
	ok, err := s.Blobs.Has(ctx, job.ManifestKeyFor(s.Tenant, digest))
	if err != nil || !ok {
		return false, err
	}
	if s.Dir == "" {
		return true, nil
	}
	man := filepath.Join(s.Dir, digest+".man")
	if _, err := os.Stat(filepath.Join(s.Dir, digest+".bin")); err != nil {
		return false, nil
	}
	now := time.Now()
	return os.Chtimes(man, now, now) == nil, nil
}

// version is a program sent earlier, with its manifest.
type version struct {
	digest  string
	program []byte
	m       *Manifest
	depth   []int
	at      map[ID]int // where each of its chunks starts in program, by ID
	entry   map[ID]int // each chunk's index in its manifest's table
}

// base picks, among the kept versions that share chunks with spans, the one that
// shares the most and that the store holds, with the store's manifest of it:
// Dir is the user's, shared by every cluster, and a version's manifest names the
// packs of the store it was sent to. It returns nil when there is none.
func (s *Sender) base(ctx context.Context, spans []span) *version {
	if s.Dir == "" {
		return nil
	}
	ids := make(map[ID]bool, len(spans))
	for _, sp := range spans {
		ids[sp.id] = true
	}
	type candidate struct {
		digest string
		shared int
	}
	var cands []candidate
	for _, name := range s.kept() {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		m, err := ParseManifest(data)
		if err != nil {
			continue
		}
		shared := 0
		for _, i := range m.File {
			if ids[m.Table[i].ID] {
				shared++
			}
		}
		if shared > 0 {
			cands = append(cands, candidate{strings.TrimSuffix(filepath.Base(name), ".man"), shared})
		}
	}
	// The newest of those that share as many first.
	slices.SortStableFunc(cands, func(a, b candidate) int { return b.shared - a.shared })
	for _, c := range cands[:min(2, len(cands))] {
		if v := s.version(ctx, c.digest); v != nil {
			return v
		}
	}
	return nil
}

// version is the kept version digest, with the store's manifest of it, or nil if
// the store lacks it.
func (s *Sender) version(ctx context.Context, digest string) *version {
	data, err := readBlob(ctx, s.Blobs, job.ManifestKeyFor(s.Tenant, digest))
	if err != nil {
		return nil
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil
	}
	program, err := os.ReadFile(filepath.Join(s.Dir, digest+".bin"))
	if err != nil || int64(len(program)) != m.Size || sha256.Sum256(program) != m.Digest {
		return nil
	}
	depth, err := m.depths()
	if err != nil {
		return nil
	}
	v := &version{digest: digest, program: program, m: m, depth: depth, at: map[ID]int{}, entry: map[ID]int{}}
	for j, e := range m.Table {
		v.entry[e.ID] = j
	}
	off := 0
	for _, i := range m.File {
		e := m.Table[i]
		if _, ok := v.at[e.ID]; !ok {
			v.at[e.ID] = off
		}
		off += e.Size
	}
	now := time.Now()
	os.Chtimes(filepath.Join(s.Dir, digest+".man"), now, now)
	return v
}

// keep records a version sent, and forgets the oldest beyond Keep.
func (s *Sender) keep(program []byte, digest string, manifest []byte) {
	if s.Dir == "" || os.MkdirAll(s.Dir, 0o700) != nil {
		return
	}
	bin, man := filepath.Join(s.Dir, digest+".bin"), filepath.Join(s.Dir, digest+".man")
	if fi, err := os.Stat(bin); err == nil && fi.Size() == int64(len(program)) {
		// Kept already (a file named by its digest is whole: it was renamed
		// into place): mark it used.
		now := time.Now()
		if os.Chtimes(man, now, now) == nil {
			return
		}
	}
	if writeFile(bin, program) != nil || writeFile(man, manifest) != nil {
		return
	}
	all := s.kept()
	keep := s.Keep
	if keep <= 0 {
		keep = 4
	}
	for _, name := range all[min(keep, len(all)):] {
		os.Remove(name)
		os.Remove(strings.TrimSuffix(name, ".man") + ".bin")
	}
}

// kept lists the manifests of the versions kept in Dir, newest first.
func (s *Sender) kept() []string {
	names, _ := filepath.Glob(filepath.Join(s.Dir, "*.man"))
	at := make(map[string]time.Time, len(names))
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil {
			at[n] = fi.ModTime()
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return at[b].Compare(at[a]) })
	return names
}

// writeFile writes data to path whole or not at all.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readBlob reads a small blob whole.
func readBlob(ctx context.Context, s blob.Store, key string) ([]byte, error) {
	r, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// builder makes a new version's manifest, copying what it shares with the
// base's and encoding the rest into one pack.
type builder struct {
	program []byte
	base    *version
	m       *Manifest
	index   map[ID]int // table index of each chunk in the new manifest
	packs   map[[32]byte]int
	copied  map[int]int // base table index → new table index
	pack    []byte
	fresh   []int // table indexes of entries in the new pack
}

// build makes program's manifest (without its digest and new pack's digest, which
// the caller adds) and the pack of chunks it needs that base lacks.
func build(program []byte, spans []span, base *version) (*Manifest, []byte, Sent) {
	b := &builder{
		program: program, base: base,
		m:     &Manifest{Size: int64(len(program))},
		index: map[ID]int{}, packs: map[[32]byte]int{}, copied: map[int]int{},
	}
	sent := Sent{Chunks: len(spans)}
	if base != nil {
		sent.Base = base.digest
	}
	// Each chunk's nearest neighbours on either side that the base has, by which
	// a new chunk finds the base's bytes it replaces.
	prev, next := make([]int, len(spans)), make([]int, len(spans))
	known := func(i int) bool { _, ok := b.baseAt(spans[i].id); return ok }
	last := -1
	for i := range spans {
		prev[i] = last
		if known(i) {
			last = i
		}
	}
	last = len(spans)
	for i := len(spans) - 1; i >= 0; i-- {
		next[i] = last
		if known(i) {
			last = i
		}
	}
	// The chunks the base lacks are encoded first, in parallel; the table is
	// then made in order.
	var todo []int
	seen := map[ID]bool{}
	for i, sp := range spans {
		if _, ok := b.baseEntry(sp.id); !ok && !seen[sp.id] {
			seen[sp.id] = true
			todo = append(todo, i)
		}
	}
	encoded := make(map[ID]encoding, len(todo))
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(1, len(todo))) {
		wg.Go(func() {
			whole := encoder(zstd.SpeedDefault, nil)
			defer whole.Close()
			for i := range work {
				e := b.encode(whole, spans[i], prev[i], next[i], spans)
				mu.Lock()
				encoded[spans[i].id] = e
				mu.Unlock()
			}
		})
	}
	for _, i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, sp := range spans {
		if j, ok := b.index[sp.id]; ok {
			b.m.File = append(b.m.File, j)
			continue
		}
		if j, ok := b.baseEntry(sp.id); ok {
			b.m.File = append(b.m.File, b.copyEntry(j))
			continue
		}
		e := encoded[sp.id]
		b.add(sp, e)
		sent.New++
		if e.kind != kindWhole {
			sent.Deltas++
		}
		b.m.File = append(b.m.File, len(b.m.Table)-1)
	}
	if len(b.pack) > 0 {
		for _, j := range b.fresh {
			b.m.Table[j].Pack = len(b.m.Packs) // the new pack's, which the caller appends
		}
	}
	return b.m, b.pack, sent
}

// baseAt is where the chunk id starts in the base's executable.
func (b *builder) baseAt(id ID) (int, bool) {
	if b.base == nil {
		return 0, false
	}
	off, ok := b.base.at[id]
	return off, ok
}

// baseEntry is the base's table index of chunk id.
func (b *builder) baseEntry(id ID) (int, bool) {
	if b.base == nil {
		return 0, false
	}
	j, ok := b.base.entry[id]
	return j, ok
}

// copyEntry copies the base's table entry j, and the entries it rests on, into
// the new table, and returns its index there.
func (b *builder) copyEntry(j int) int {
	if k, ok := b.copied[j]; ok {
		return k
	}
	e := b.base.m.Table[j]
	if k, ok := b.index[e.ID]; ok {
		b.copied[j] = k
		return k
	}
	bases := make([]int, len(e.Bases))
	for n, bj := range e.Bases {
		bases[n] = b.copyEntry(bj)
	}
	e.Bases = bases
	p := b.base.m.Packs[e.Pack]
	pi, ok := b.packs[p]
	if !ok {
		pi = len(b.m.Packs)
		b.packs[p] = pi
		b.m.Packs = append(b.m.Packs, p)
	}
	e.Pack = pi
	k := len(b.m.Table)
	b.m.Table = append(b.m.Table, e)
	b.index[e.ID] = k
	b.copied[j] = k
	return k
}

// window is a delta's base bytes: the base executable's [lo, hi).
type window struct{ lo, hi int }

// encoding is a new chunk's, in its pack.
type encoding struct {
	data []byte
	kind byte
	win  window
}

// encode encodes the new chunk sp, as a delta against the base when one is
// smaller. p and n are the nearest chunks before and after sp that the base has
// (-1 and len(spans) when none is). It only reads b.
func (b *builder) encode(whole *zstd.Encoder, sp span, p, n int, spans []span) encoding {
	chunk := b.program[sp.off : sp.off+sp.n]
	best := whole.EncodeAll(chunk, nil)
	kind, win := byte(kindWhole), window{}
	if b.base != nil {
		// The region between the neighbours, here and in the base.
		newLo, newHi, oldLo, oldHi := 0, len(b.program), 0, len(b.base.program)
		if p >= 0 {
			newLo = spans[p].off + spans[p].n
			at, _ := b.baseAt(spans[p].id)
			oldLo = at + spans[p].n
		}
		if n < len(spans) {
			newHi = spans[n].off
			oldHi, _ = b.baseAt(spans[n].id)
		}
		if oldHi < oldLo { // the neighbours swapped places: look around the first
			oldHi = min(len(b.base.program), oldLo+(newHi-newLo))
		}
		rel := sp.off - newLo
		if newHi-newLo == oldHi-oldLo && oldLo+rel+sp.n <= len(b.base.program) {
			w := window{oldLo + rel, oldLo + rel + sp.n}
			if b.deltaOK(w) {
				old := b.base.program[w.lo:w.hi]
				diff := make([]byte, sp.n)
				for i := range diff {
					diff[i] = chunk[i] - old[i]
				}
				if enc := whole.EncodeAll(diff, nil); len(enc) < len(best) {
					best, kind, win = enc, kindDiff, w
				}
			}
		}
		pad := max(minWindow, abs((newHi-newLo)-(oldHi-oldLo)))
		w := window{max(oldLo, oldLo+rel-pad), min(oldHi, oldLo+rel+sp.n+pad)}
		if w.hi-w.lo > maxWindow {
			w.hi = w.lo + maxWindow
		}
		if w.lo < w.hi && b.deltaOK(w) {
			e := encoder(zstd.SpeedDefault, b.base.program[w.lo:w.hi])
			if enc := e.EncodeAll(chunk, nil); len(enc) < len(best) {
				best, kind, win = enc, kindDict, w
			}
			e.Close()
		}
	}
	return encoding{best, kind, win}
}

// add appends the new chunk sp, encoded as enc, to the pack and the table.
func (b *builder) add(sp span, enc encoding) {
	e := Entry{ID: sp.id, Off: len(b.pack), N: len(enc.data), Size: sp.n, Kind: enc.kind}
	if enc.kind != kindWhole {
		e.Bases, e.Skip = b.basesOf(enc.win)
		e.WindowLen = enc.win.hi - enc.win.lo
	}
	b.pack = append(b.pack, enc.data...)
	b.index[sp.id] = len(b.m.Table)
	b.fresh = append(b.fresh, len(b.m.Table))
	b.m.Table = append(b.m.Table, e)
}

// maxWindow bounds a delta's base bytes, and so the chunks it rests on.
const maxWindow = 4 * maxChunk

// deltaOK reports whether a delta against w would rest on chains short enough.
func (b *builder) deltaOK(w window) bool {
	ok := true
	b.overlapping(w, func(j int) {
		if b.base.depth[j]+1 > MaxDepth {
			ok = false
		}
	})
	return ok
}

// overlapping calls f with the base table index of each of the base
// executable's chunks that overlap w, in order; it returns where the first
// starts.
func (b *builder) overlapping(w window, f func(j int)) int {
	off, first := 0, -1
	for _, j := range b.base.m.File {
		size := b.base.m.Table[j].Size
		if off < w.hi && off+size > w.lo {
			if first < 0 {
				first = off
			}
			f(j)
		}
		off += size
		if off >= w.hi {
			break
		}
	}
	return first
}

// basesOf copies the base's chunks that w overlaps into the new table, and
// returns their new indexes and where w starts in them.
func (b *builder) basesOf(w window) ([]int, int) {
	var bases []int
	first := b.overlapping(w, func(j int) { bases = append(bases, b.copyEntry(j)) })
	return bases, w.lo - first
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
