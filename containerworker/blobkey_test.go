package containerworker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// A chunk is written by a job's client, which may be hostile: one that names
// another tenant's blob (its environment's secrets, its inputs, its shared files)
// as an input gets a refusal for that input, and the blob is never read into the
// program. The job's own large inputs load as ever.
func TestRunLoadsOnlyTheJobsOwnInputs(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	victim := job.NewID(time.Now(), "acme")
	const secret = "41" // a JSON int, so that echo would return it if it were loaded
	sp := spec("echo")
	sp.ID = job.NewID(time.Now(), "evil")
	sp.ReturnErrors = true
	foreign := []string{job.EnvKey(victim), job.InputKey(victim, 1), job.SharedKey("acme", "data.json"), job.InputKey(sp.ID, 0)}
	for _, k := range foreign {
		if err := blobs.Put(ctx, k, strings.NewReader(secret)); err != nil {
			t.Fatal(err)
		}
	}
	if err := blobs.Put(ctx, job.InputKey(sp.ID, 4), strings.NewReader("4")); err != nil {
		t.Fatal(err)
	}
	// Items 0 to 3 name blobs that are not their own (item 3 names its job's
	// input 0); item 4 names its own.
	c := store.Chunk{}
	for i, k := range foreign {
		c.Items = append(c.Items, store.Item{Index: int64(i), Blob: k})
	}
	c.Items = append(c.Items, store.Item{Index: 4, Blob: job.InputKey(sp.ID, 4)}, store.Item{Index: 5, Data: []byte("5")})
	sp.Inputs = len(c.Items)
	s := &memStore{chunks: []store.Chunk{c}}
	if err := run(t, s, sp, containerworker.Config{Blobs: blobs}); err != nil {
		t.Fatal(err)
	}
	got := s.byIndex()
	for i := range int64(4) {
		r, ok := got[i]
		if !ok || r.Err == nil || !strings.Contains(r.Err.Message, "refused") || string(r.Output) == secret {
			t.Errorf("input %d naming %s: %+v; want a refusal", i, foreign[i], r)
		}
	}
	for i := int64(4); i < 6; i++ {
		if r := got[i]; r.Err != nil || string(r.Output) != string(rune('0'+i)) {
			t.Errorf("input %d: %+v; want its own value", i, r)
		}
	}
}

// An input whose blob is gone from the store fails, saying so, and its chunk is
// done: another delivery would find it gone too.
func TestRunFailsAnInputWhoseBlobIsGone(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	sp := spec("echo")
	sp.ReturnErrors = true
	if err := blobs.Put(ctx, job.InputKey(sp.ID, 2), strings.NewReader("2")); err != nil {
		t.Fatal(err)
	}
	c := store.Chunk{Items: []store.Item{{Index: 0, Data: []byte("0")}, {Index: 1, Blob: job.InputKey(sp.ID, 1)},
		{Index: 2, Blob: job.InputKey(sp.ID, 2)}, {Index: 3, Data: []byte("3")}}}
	sp.Inputs = len(c.Items)
	s := &memStore{chunks: []store.Chunk{c}}
	if err := run(t, s, sp, containerworker.Config{Blobs: blobs}); err != nil {
		t.Fatal(err)
	}
	got := s.byIndex()
	if r := got[1]; r.Err == nil || !strings.Contains(r.Err.Message, "gone from the cluster's store") {
		t.Errorf("input 1, whose blob is gone: %+v; want an error saying so", r)
	}
	for _, i := range []int64{0, 2, 3} {
		if r := got[i]; r.Err != nil || string(r.Output) != fmt.Sprint(i) {
			t.Errorf("input %d: %+v; want its own value", i, r)
		}
	}
	if s.done != 1 || s.returned != 0 {
		t.Errorf("the chunk: done %d times, returned %d; want done once", s.done, s.returned)
	}
}

// byIndex is the results stored, by their input's index.
func (s *memStore) byIndex() map[int64]store.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := map[int64]store.Result{}
	for _, r := range s.results {
		got[r.Index] = r
	}
	return got
}
