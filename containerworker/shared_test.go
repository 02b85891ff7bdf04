package containerworker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store"
)

// fileOp is one call of "shared": read, write (Size bytes of Data repeated) or
// remove the shared file Name.
type fileOp struct {
	Op   string `json:"op"`
	Name string `json:"name"`
	Data string `json:"data,omitempty"`
	Size int    `json:"size,omitempty"`
	// SleepMS delays the call's return after its work.
	SleepMS int `json:"sleep_ms,omitempty"`
}

var _ = burla.Func("shared", func(ctx context.Context, op fileOp) (string, error) {
	defer time.Sleep(time.Duration(op.SleepMS) * time.Millisecond)
	dir := burla.SharedDir()
	if dir == "" {
		return "", errors.New("no shared directory")
	}
	p := filepath.Join(dir, filepath.FromSlash(op.Name))
	switch op.Op {
	case "read":
		b, err := os.ReadFile(p)
		return string(b), err
	case "write":
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		data := []byte(op.Data)
		if op.Size > 0 {
			data = bytes.Repeat(data, op.Size/len(data))
		}
		return op.Name, os.WriteFile(p, data, 0o644)
	case "remove":
		return op.Name, os.Remove(p)
	}
	return "", fmt.Errorf("unknown op %q", op.Op)
})

// filesFirst is a worker's store that checks, as each result is stored, that the
// file its call wrote is already in the blob store.
type filesFirst struct {
	*memStore
	blobs  blob.Store
	writes map[int64]string // input index → the file it writes
	late   chan string
}

func (s *filesFirst) PutResults(ctx context.Context, jobID string, rs []store.Result) error {
	for _, r := range rs {
		if name, ok := s.writes[r.Index]; ok {
			if has, err := s.blobs.Has(ctx, job.SharedKey(job.DefaultTenant, name)); !has || err != nil {
				select {
				case s.late <- name:
				default:
				}
			}
		}
	}
	return s.memStore.PutResults(ctx, jobID, rs)
}

func opChunks(per int, ops ...fileOp) []store.Chunk {
	var cs []store.Chunk
	for i, op := range ops {
		if i%per == 0 {
			cs = append(cs, store.Chunk{Seq: int64(len(cs))})
		}
		data, _ := json.Marshal(op)
		c := &cs[len(cs)-1]
		c.Items = append(c.Items, store.Item{Index: int64(i), Data: data})
	}
	return cs
}

// runShared runs one worker, with the shared directory dir, on ops until every
// chunk is done, and returns the outputs by input index.
func runShared(t *testing.T, blobs blob.Store, dir string, per int, ops ...fileOp) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The runtime names the directory in the worker's environment; the program inherits it.
	t.Setenv(job.EnvSharedDir, dir)
	mem := &memStore{chunks: opChunks(per, ops...)}
	st := &filesFirst{memStore: mem, blobs: blobs, writes: map[int64]string{}, late: make(chan string, 1)}
	for i, op := range ops {
		if op.Op == "write" {
			st.writes[int64(i)] = op.Name
		}
	}
	want := len(mem.chunks)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := containerworker.New(containerworker.Config{Store: st, Blobs: blobs, SharedDir: dir})
	errc := make(chan error, 1)
	go func() {
		errc <- w.Run(ctx, job.Spec{ID: "j-test", Function: "shared", Binary: strings.Repeat("0", 64), Inputs: len(ops), FuncCPU: 1, Lease: time.Second}, exe)
	}()
	for done := false; !done; {
		select {
		case err := <-errc:
			t.Fatalf("worker stopped before its chunks were done: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		mem.mu.Lock()
		done = mem.done == want
		mem.mu.Unlock()
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-st.late:
		t.Errorf("the result of the call that wrote %s was stored before the file", name)
	default:
	}
	outs := make([]string, len(ops))
	for _, r := range mem.results {
		if r.Err != nil {
			t.Fatalf("input %d (%+v) failed: %s", r.Index, ops[r.Index], r.Err.Message)
		}
		if err := json.Unmarshal(r.Output, &outs[r.Index]); err != nil {
			t.Fatal(err)
		}
	}
	return outs
}

func readBlob(t *testing.T, b blob.Store, name string) (string, bool) {
	t.Helper()
	r, err := b.Open(context.Background(), job.SharedKey(job.DefaultTenant, name))
	if errors.Is(err, blob.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, _ := io.ReadAll(r)
	return string(data), true
}

// Calls see the files stored before their job, and the files they write are
// stored before their results, whatever call runs next; a later worker, on a
// fresh directory, sees them, and a call's removal reaches the store.
func TestRunSyncsSharedDir(t *testing.T) {
	blobs := &memblob.Store{}
	if err := blobs.Put(context.Background(), job.SharedKey(job.DefaultTenant, "in.txt"), strings.NewReader("from the client")); err != nil {
		t.Fatal(err)
	}
	ops := []fileOp{{Op: "read", Name: "in.txt"}}
	// Many calls in a chunk larger than the worker's pipeline: each call's file is
	// written while the next calls are already sent, and results are stored while
	// the chunk runs (the worker batches them for some 50ms).
	for i := range 100 {
		ops = append(ops, fileOp{Op: "write", Name: fmt.Sprintf("out/%d.txt", i), Data: fmt.Sprint(i), SleepMS: 5})
	}
	ops = append(ops, fileOp{Op: "write", Name: "big.bin", Data: "0123456789", Size: 3 << 20})
	outs := runShared(t, blobs, t.TempDir(), 80, ops...)
	if outs[0] != "from the client" {
		t.Fatalf("the call read %q; want the file stored before the job", outs[0])
	}
	for i := range 100 {
		if got, ok := readBlob(t, blobs, fmt.Sprintf("out/%d.txt", i)); got != fmt.Sprint(i) {
			t.Fatalf("out/%d.txt stored as %q (%v)", i, got, ok)
		}
	}
	if got, _ := readBlob(t, blobs, "big.bin"); got != strings.Repeat("0123456789", (3<<20)/10) {
		t.Fatalf("big.bin stored as %d bytes; want %d", len(got), (3<<20)/10*10)
	}

	// A later job's worker, with a fresh directory, reads the first one's output and
	// removes the client's file.
	outs = runShared(t, blobs, t.TempDir(), 2, fileOp{Op: "read", Name: "out/42.txt"}, fileOp{Op: "remove", Name: "in.txt"})
	if outs[0] != "42" {
		t.Fatalf("a later worker read %q; want 42", outs[0])
	}
	if _, ok := readBlob(t, blobs, "in.txt"); ok {
		t.Fatal("in.txt is still stored after a call removed it")
	}
}

// A worker without a shared directory runs calls as before, and they see none.
func TestRunWithoutSharedDir(t *testing.T) {
	t.Setenv(job.EnvSharedDir, "")
	s := &memStore{chunks: opChunks(1, fileOp{Op: "read", Name: "x"})}
	err := run(t, s, spec("shared"), containerworker.Config{Blobs: &memblob.Store{}})
	var je *containerworker.JobError
	if !errors.As(err, &je) || !strings.Contains(je.Message, "no shared directory") {
		t.Fatalf("Run = %v; want the call to fail finding no shared directory", err)
	}
}
