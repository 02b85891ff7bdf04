package firestorestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/firestorestore"
	"github.com/burla-temporal/burla/store/firestorestore/emulator"
	"github.com/burla-temporal/burla/store/storetest"
)

const project = "burla-test"

var emu *emulator.Emulator

// TestMain starts the Firestore emulator once for the package. A missing emulator
// fails the tests: the Firestore store is never skipped.
func TestMain(m *testing.M) {
	var err error
	if emu, err = emulator.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: the Firestore store's tests need the Firestore emulator:", err)
		os.Exit(1)
	}
	if err := emu.SetEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

var prefixes atomic.Int64

// newStore returns a store on its own collections, so that tests do not see each
// other's documents.
func newStore(t *testing.T) *firestorestore.Store {
	t.Helper()
	return storeAt(t, fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, prefixes.Add(1)))
}

// storeAt returns a store on the collections named by prefix, as a second
// machine of one cluster would have.
func storeAt(t *testing.T, prefix string) *firestorestore.Store {
	t.Helper()
	s, err := firestorestore.Dial(context.Background(), firestorestore.Config{
		Project: project,
		Prefix:  prefix,
		Blobs:   &memBlobs{m: map[string][]byte{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// Two claimers whose clocks are 30 s ahead and 30 s behind agree on who holds a
// chunk: neither takes one the other's lease still covers, and neither waits long
// past a lease that ran out. On the claimers' own clocks the one ahead would take
// the chunk at once (doubling its work), and the one behind would wait a minute.
func TestLeasesAcrossSkewedClocks(t *testing.T) {
	prefix := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, prefixes.Add(1))
	ahead, behind := storeAt(t, prefix), storeAt(t, prefix)
	firestorestore.SetLocalClock(ahead, func() time.Time { return time.Now().Add(30 * time.Second) })
	firestorestore.SetLocalClock(behind, func() time.Time { return time.Now().Add(-30 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const lease = 3 * time.Second
	for _, c := range []struct {
		name         string
		first, other *firestorestore.Store
	}{{"behind holds", behind, ahead}, {"ahead holds", ahead, behind}} {
		t.Run(c.name, func(t *testing.T) {
			spec := job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 1, FuncCPU: 1, Lease: lease, ClientTimeout: time.Second}
			if err := c.first.CreateJob(ctx, spec); err != nil {
				t.Fatal(err)
			}
			if err := c.first.PutChunks(ctx, spec.ID, []store.Chunk{{Seq: 0, Items: []store.Item{{Index: 0, Data: []byte("0")}}}}); err != nil {
				t.Fatal(err)
			}
			if err := c.first.Seal(ctx, spec.ID, 1); err != nil {
				t.Fatal(err)
			}
			held, err := c.first.Claim(ctx, spec.ID, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			claimed := time.Now()
			if p, err := c.other.Progress(ctx, spec.ID); err != nil || p.InFlight != 1 {
				t.Errorf("the other claimer's progress = %+v, %v; want the chunk in flight", p, err)
			}
			if stolen, err := c.other.Claim(ctx, spec.ID, time.Second); !errors.Is(err, store.ErrNoChunk) {
				t.Fatalf("the other claimer took a chunk whose lease had %v left: %v, %v", lease-time.Since(claimed), stolen, err)
			}
			// The holder dies: the other takes the chunk once the lease ran out.
			next, err := c.other.Claim(ctx, spec.ID, 20*time.Second)
			took := time.Since(claimed)
			if err != nil {
				t.Fatalf("the other claimer never took the chunk of a dead one: %v", err)
			}
			if took < lease-500*time.Millisecond || took > lease+3*time.Second {
				t.Errorf("the other claimer took the chunk %v after it was claimed; want about the %v lease", took.Round(time.Millisecond), lease)
			}
			if err := held.Extend(ctx); err == nil {
				t.Errorf("the first claimer extended a lease the other now holds")
			}
			if err := next.Done(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Results are keyed by input index: a second result for an index is dropped, even
// from a watch that starts later.
func TestFirstResultWins(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	spec := job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 2, FuncCPU: 1, Lease: time.Second, ClientTimeout: time.Second}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := s.PutResults(ctx, spec.ID, []store.Result{{Index: 0, Output: []byte("first")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutResults(ctx, spec.ID, []store.Result{{Index: 0, Output: []byte("second")}, {Index: 1, Output: []byte("one")}}); err != nil {
		t.Fatalf("a repeated result must not fail the batch: %v", err)
	}
	var mu sync.Mutex
	got := map[int64]string{}
	n := 0
	w, err := s.WatchResults(ctx, spec.ID, func(rs []store.Result) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			got[r.Index] = string(r.Output)
			n++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 2 || got[0] != "first" || got[1] != "one" {
		t.Errorf("watched %d results %v; want input 0 = first, input 1 = one", n, got)
	}
}

// A watch delivers every document once even when it outlives several listener
// windows, and Sync waits for all of them.
func TestWatchManyBatches(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	spec := job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 1, FuncCPU: 1, Lease: time.Second, ClientTimeout: time.Second}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer firestorestore.SetListenerWindow(100)()
	const n = 450 // more than four listener windows
	var mu sync.Mutex
	seen := map[int64]int{}
	w, err := s.WatchResults(ctx, spec.ID, func(rs []store.Result) {
		mu.Lock()
		for _, r := range rs {
			seen[r.Index]++
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < n; i += 150 {
		var rs []store.Result
		for j := i; j < i+150; j++ {
			rs = append(rs, store.Result{Index: int64(j), Output: []byte("x")})
		}
		if err := s.PutResults(ctx, spec.ID, rs); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := w.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("watched %d distinct results; want %d", len(seen), n)
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("result %d delivered %d times; want once", i, k)
		}
	}
}

// Chunks near the record limit are committed in several batches under Firestore's
// request size limit.
func TestLargeChunks(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	spec := job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 12, FuncCPU: 1, Lease: 10 * time.Second, ClientTimeout: time.Second}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("b"), store.MaxInlineBytes)
	var cs []store.Chunk
	for i := range 12 { // two commits' worth
		cs = append(cs, store.Chunk{Seq: int64(i), Items: []store.Item{{Index: int64(i), Data: big}, {Index: int64(i), Data: big}, {Index: int64(i), Data: big}}})
	}
	if err := s.PutChunks(ctx, spec.ID, cs); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(ctx, spec.ID, len(cs)); err != nil {
		t.Fatal(err)
	}
	p, err := s.Progress(ctx, spec.ID)
	if err != nil || p.Waiting != 12 {
		t.Fatalf("progress = %+v, %v; want 12 waiting", p, err)
	}
	c, err := s.Claim(ctx, spec.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Chunk().Items[0].Data; !bytes.Equal(got, big) {
		t.Errorf("claimed chunk's input has %d bytes; want %d", len(got), len(big))
	}
	tooBig := store.Chunk{Seq: 99, Items: []store.Item{{Index: 0, Data: bytes.Repeat([]byte("x"), store.MaxRecordBytes)}}}
	if err := s.PutChunks(ctx, spec.ID, []store.Chunk{tooBig}); err == nil {
		t.Error("PutChunks accepted a chunk over the record limit")
	}
}

func TestEmulatorReset(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.PutNode(ctx, store.Node{ID: "node-r", CPUs: 1, Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := emu.Reset(ctx, project); err != nil {
		t.Fatal(err)
	}
	if nodes, err := s.ListNodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("nodes after reset = %v, %v; want none", nodes, err)
	}
}

// memBlobs is an in-memory blob store; the GCS one has its own tests.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (b *memBlobs) Put(_ context.Context, key string, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.m[key] = data
	b.mu.Unlock()
	return nil
}

func (b *memBlobs) Open(_ context.Context, key string) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.m[key]
	if !ok {
		return nil, blob.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (b *memBlobs) Has(_ context.Context, key string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[key]
	return ok, nil
}

func (b *memBlobs) List(_ context.Context, prefix string) ([]blob.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var infos []blob.Info
	for k, v := range b.m {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, blob.Info{Key: k, Size: int64(len(v))})
		}
	}
	return infos, nil
}

func (b *memBlobs) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
	return nil
}

func BenchmarkDrain(b *testing.B) {
	s, err := firestorestore.Dial(context.Background(), firestorestore.Config{
		Project: project, Prefix: fmt.Sprintf("b%d", time.Now().UnixNano()%1e9), Blobs: &memBlobs{m: map[string][]byte{}}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchmarkDrain(b, s)
}
