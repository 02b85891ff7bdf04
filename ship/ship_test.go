package ship

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/job"
	"github.com/klauspost/compress/zstd"
)

func digestOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// send ships program and checks that a node with nodeDir makes it again.
func send(t *testing.T, s *Sender, nodeDir string, program []byte) Sent {
	t.Helper()
	ctx := context.Background()
	d := digestOf(program)
	sent, err := s.Send(ctx, program, d)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	path, err := Fetch(ctx, s.Blobs, s.Tenant, d, nodeDir)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, program) {
		t.Fatalf("fetched %d bytes that differ from the %d sent", len(got), len(program))
	}
	if fi, _ := os.Stat(path); fi.Mode()&0o111 == 0 {
		t.Errorf("fetched executable has mode %v", fi.Mode())
	}
	return sent
}

// edit returns b with n bytes replaced at off by ins.
func edit(b []byte, off, n int, ins []byte) []byte {
	out := append([]byte(nil), b[:off]...)
	out = append(out, ins...)
	return append(out, b[off+n:]...)
}

// program is random-looking but compressible, like code: words from a small
// vocabulary, some with an operand.
func program(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 64)
	for i := range words {
		words[i] = make([]byte, 2+r.IntN(6))
		for j := range words[i] {
			words[i][j] = byte(r.Uint32())
		}
	}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		if r.IntN(4) == 0 {
			b = append(b, byte(r.Uint32()), byte(r.Uint32()))
		}
	}
	return b[:n]
}

func TestVersionsSendWhatChanged(t *testing.T) {
	s := &Sender{Blobs: &memblob.Store{}, Tenant: "acme", Dir: t.TempDir()}
	v1 := program(1, 4<<20)
	first := send(t, s, t.TempDir(), v1)
	if first.Deltas != 0 || first.New != first.Chunks || first.Base != "" {
		t.Errorf("first version: %+v, want every chunk new and whole", first)
	}
	if first.Bytes >= int64(len(v1)) {
		t.Errorf("first version sent %d bytes of %d: not compressed", first.Bytes, len(v1))
	}
	node := t.TempDir()
	send(t, s, node, v1)
	v2 := edit(v1, 2<<20, 10, []byte("a longer edit than ten"))
	second := send(t, s, node, v2)
	t.Logf("first %+v; second %+v", first, second)
	if second.Base != digestOf(v1) || second.New == 0 || second.New > 3 {
		t.Errorf("second version: %+v, want a chunk or two new, on the first", second)
	}
	if second.Bytes > int64(len(v2))/100 {
		t.Errorf("second version sent %d bytes of %d", second.Bytes, len(v2))
	}
	// A node that never had the first version fetches its pack as well.
	send(t, s, t.TempDir(), v2)
	// Found again: nothing sent.
	if again := send(t, s, node, v2); !again.Found || again.Bytes != 0 {
		t.Errorf("sending the same version again: %+v", again)
	}
	// Shipped and kept: Send need not be called, nor the program read.
	ctx := context.Background()
	if ok, err := s.Shipped(ctx, digestOf(v2)); !ok || err != nil {
		t.Errorf("Shipped of a version sent and kept: %v, %v", ok, err)
	}
	other := &Sender{Blobs: s.Blobs, Tenant: s.Tenant, Dir: t.TempDir()}
	if ok, err := other.Shipped(ctx, digestOf(v2)); ok || err != nil {
		t.Errorf("Shipped for a sender that does not keep it: %v, %v; want false, to keep it", ok, err)
	}
	if sent := send(t, other, node, v2); !sent.Found {
		t.Errorf("another sender's send of a shipped version: %+v", sent)
	}
	if ok, _ := other.Shipped(ctx, digestOf(v2)); !ok {
		t.Error("a version found in the store is not kept as a base")
	}
	if ok, err := s.Shipped(ctx, digestOf(program(9, 100))); ok || err != nil {
		t.Errorf("Shipped of a version never sent: %v, %v", ok, err)
	}
}

// A long run of versions edited in the same place never rests on a chain of
// deltas longer than MaxDepth, and each one is made again on nodes new and old.
func TestChainsOfDeltasAreCut(t *testing.T) {
	s := &Sender{Blobs: &memblob.Store{}, Tenant: job.DefaultTenant, Dir: t.TempDir()}
	node := t.TempDir()
	v := program(2, 1<<20)
	whole := 0
	for i := range 3 * MaxDepth {
		// Same length, a few bytes moved in every chunk of a region: deltas.
		for j := 300 << 10; j < 500<<10; j += 512 {
			v[j] = byte(i)
		}
		sent := send(t, s, node, v)
		t.Logf("version %d: %+v", i, sent)
		if i > 0 && sent.Deltas < sent.New {
			whole++
		}
		m := manifestOf(t, s, digestOf(v))
		if _, err := m.depths(); err != nil {
			t.Fatalf("version %d: %v", i, err)
		}
	}
	send(t, s, t.TempDir(), v)
	if whole == 0 {
		t.Errorf("no version sent a chunk whole to cut a chain of %d versions", 3*MaxDepth)
	}
}

func manifestOf(t *testing.T, s *Sender, digest string) *Manifest {
	t.Helper()
	data, err := readBlob(context.Background(), s.Blobs, job.ManifestKeyFor(s.Tenant, digest))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The figure the README's promise rests on: a Go program changed by one line,
// built as `go build` builds it (with debug information), sends at most a tenth
// of its bytes; this change sends far less.
func TestOneLineChangeOfAGoProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program twice")
	}
	dir := t.TempDir()
	write := func(line string) []byte {
		src := "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() {\n\t" + line +
			"\n\tif len(os.Args) > 5 {\n\t\thttp.ListenAndServe(os.Args[1], nil)\n\t}\n}\n"
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "prog")
		cmd := exec.Command("go", "build", "-o", out, "./main.go")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return Strip(b)
	}
	v1 := write(`fmt.Println("hello")`)
	v2 := write(`fmt.Println("hello,", os.Args[0])`)
	s := &Sender{Blobs: &memblob.Store{}, Tenant: "acme", Dir: t.TempDir()}
	node := t.TempDir()
	first := send(t, s, node, v1)
	second := send(t, s, node, v2)
	t.Logf("%d-byte program: the first version sent %d bytes (%.1f%%); after a one-line change, %d (%.2f%%; %d of %d chunks new, %d as deltas)",
		len(v2), first.Bytes, 100*float64(first.Bytes)/float64(len(v1)), second.Bytes, 100*float64(second.Bytes)/float64(len(v2)),
		second.New, second.Chunks, second.Deltas)
	if second.Bytes > int64(len(v2))/10 {
		t.Errorf("a one-line change sent %d bytes of %d: more than a tenth", second.Bytes, len(v2))
	}
	// A node's fetch holds the packs and the chunks deltas rest on, not every
	// chunk, nor a decoder per chunk: on a node that has neither version it
	// allocates the packs, about half the program (the chunks the deltas rest
	// on) and little more, under twice the program's size (13.5 MB for 8.3 MB
	// when written; 2.6 times the size when it kept every chunk and made a
	// window per delta).
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if _, err := Fetch(context.Background(), s.Blobs, s.Tenant, digestOf(v2), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	t.Logf("a fresh node's fetch of the changed program allocated %d bytes", m1.TotalAlloc-m0.TotalAlloc)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 2*uint64(len(v2)) {
		t.Errorf("a fresh node's fetch of a %d-byte program allocated %d bytes", len(v2), alloc)
	}
	// The stripped program still runs.
	path := filepath.Join(dir, "stripped")
	if err := os.WriteFile(path, v2, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(path).CombinedOutput(); err != nil || string(out) != "hello, "+path+"\n" {
		t.Errorf("the stripped program printed %q (%v)", out, err)
	}
}

func TestCorruptionIsFound(t *testing.T) {
	ctx := context.Background()
	st := &memblob.Store{}
	s := &Sender{Blobs: st, Tenant: "acme", Dir: t.TempDir()}
	v1 := program(3, 1<<20)
	send(t, s, t.TempDir(), v1)
	v2 := edit(v1, 1000, 1, []byte("xyz"))
	d2 := digestOf(v2)
	send(t, s, t.TempDir(), v2)
	m := manifestOf(t, s, d2)
	// A pack changed under its name.
	last := m.PackDigests()[len(m.Packs)-1]
	st.Put(ctx, job.PackKeyFor("acme", last), strings.NewReader("not the pack"))
	if _, err := Fetch(ctx, st, "acme", d2, t.TempDir()); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Errorf("fetch with a bad pack: %v, want ErrDigestMismatch", err)
	}
	// A manifest that is not one.
	st.Put(ctx, job.ManifestKeyFor("acme", d2), strings.NewReader("garbage"))
	if _, err := Fetch(ctx, st, "acme", d2, t.TempDir()); !errors.Is(err, ErrBadManifest) {
		t.Errorf("fetch with a bad manifest: %v, want ErrBadManifest", err)
	}
	// Another program's manifest under this one's digest.
	data, _ := readBlob(ctx, st, job.ManifestKeyFor("acme", digestOf(v1)))
	st.Put(ctx, job.ManifestKeyFor("acme", d2), bytes.NewReader(data))
	if _, err := Fetch(ctx, st, "acme", d2, t.TempDir()); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Errorf("fetch with another program's manifest: %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Send(ctx, v1, d2); err == nil {
		t.Error("send under another program's digest: no error")
	}
}

// A program an older client shipped whole is still fetched.
func TestWholeProgramsAreStillFetched(t *testing.T) {
	ctx := context.Background()
	st := &memblob.Store{}
	v := program(4, 100<<10)
	st.Put(ctx, job.BinaryKeyFor("acme", digestOf(v)), bytes.NewReader(v))
	path, err := Fetch(ctx, st, "acme", digestOf(v), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, v) {
		t.Error("fetched another program")
	}
}

func FuzzParseManifest(f *testing.F) {
	s := &Sender{Blobs: &memblob.Store{}, Tenant: "acme", Dir: f.TempDir()}
	v1 := program(5, 300<<10)
	v2 := edit(v1, 1000, 1, []byte("xyz"))
	for _, v := range [][]byte{v1, v2} {
		if _, err := s.Send(context.Background(), v, digestOf(v)); err != nil {
			f.Fatal(err)
		}
		data, _ := readBlob(context.Background(), s.Blobs, job.ManifestKeyFor("acme", digestOf(v)))
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if _, err := m.depths(); err != nil {
			t.Errorf("parsed a manifest whose chains fail: %v", err)
		}
		if _, err := ParseManifest(m.encode()); err != nil {
			t.Errorf("a parsed manifest, encoded again, does not parse: %v", err)
		}
	})
}

// The kept versions are the user's, for every cluster: a version kept from one
// store is a base in another only as that store holds it.
func TestOneDirForManyStores(t *testing.T) {
	dir := t.TempDir()
	a := &Sender{Blobs: &memblob.Store{}, Tenant: "acme", Dir: dir}
	b := &Sender{Blobs: &memblob.Store{}, Tenant: "acme", Dir: dir}
	v1 := program(6, 1<<20)
	v2 := edit(v1, 5000, 3, []byte("abcdef"))
	v3 := edit(v2, 9000, 3, []byte("ghijkl"))
	send(t, a, t.TempDir(), v1)
	if sent := send(t, a, t.TempDir(), v2); sent.Base != digestOf(v1) {
		t.Errorf("v2 to a: %+v, want it on v1", sent)
	}
	if sent := send(t, b, t.TempDir(), v2); sent.Base != "" || sent.Deltas != 0 {
		t.Errorf("v2 to b, which has nothing: %+v, want it whole", sent)
	}
	if sent := send(t, b, t.TempDir(), v3); sent.Base != digestOf(v2) || sent.Deltas == 0 {
		t.Errorf("v3 to b: %+v, want it on b's v2", sent)
	}
}

// A manifest whose counts its bytes cannot hold fails at the count, before it
// allocates for them: a tenant's manifest is read by nodes that serve others.
func TestManifestCountsAreBounded(t *testing.T) {
	for _, tail := range [][]byte{
		binary.AppendUvarint(nil, maxPacks),                                                     // packs
		append(binary.AppendUvarint(nil, 0), binary.AppendUvarint(nil, maxTable)...),            // chunks of the file
		append(append(binary.AppendUvarint(nil, 0), 0), binary.AppendUvarint(nil, maxTable)...), // table
	} {
		raw := append([]byte(magic), manifestVersion)
		raw = binary.AppendUvarint(raw, 0)
		raw = append(raw, make([]byte, 32)...)
		raw = append(raw, tail...)
		data := encoder(zstd.SpeedDefault, nil).EncodeAll(raw, nil)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, err := ParseManifest(data)
		runtime.ReadMemStats(&m1)
		if !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), " in ") {
			t.Errorf("a manifest of %d bytes with a count of %x: %v; want it refused at the count", len(raw), tail, err)
		}
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 1<<20 {
			t.Errorf("parsing it allocated %d bytes", alloc)
		}
	}
}
