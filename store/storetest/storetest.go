// Package storetest is the contract every store backend must meet. A backend's
// tests call Run with a function that returns a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// Run runs the contract suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("ClaimDoneDrains", func(t *testing.T) { testClaimDoneDrains(t, newStore(t)) })
	t.Run("LeaseRedelivers", func(t *testing.T) { testLeaseRedelivers(t, newStore(t)) })
	t.Run("ExtendKeepsLease", func(t *testing.T) { testExtendKeepsLease(t, newStore(t)) })
	t.Run("ReturnRedeliversAtOnce", func(t *testing.T) { testReturnRedelivers(t, newStore(t)) })
	t.Run("ConcurrentClaimsAreDisjoint", func(t *testing.T) { testConcurrentClaims(t, newStore(t)) })
	t.Run("ResultsAndLogsWatch", func(t *testing.T) { testWatch(t, newStore(t)) })
	t.Run("JobSpecAndHeartbeat", func(t *testing.T) { testJobs(t, newStore(t)) })
	t.Run("Upload", func(t *testing.T) { testUpload(t, newStore(t)) })
	t.Run("Nodes", func(t *testing.T) { testNodes(t, newStore(t)) })
	t.Run("Grants", func(t *testing.T) { testGrants(t, newStore(t)) })
	t.Run("ClaimHonoursCancel", func(t *testing.T) { testClaimHonoursCancel(t, newStore(t)) })
	t.Run("DeleteInputs", func(t *testing.T) { testDeleteInputs(t, newStore(t)) })
	t.Run("Records", func(t *testing.T) { testRecords(t, newStore(t)) })
}

func newSpec(t *testing.T, lease time.Duration) job.Spec {
	return job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0),
		Inputs: 3, FuncCPU: 1, Lease: lease, ClientTimeout: 10 * time.Second}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t *testing.T, ctx context.Context, s store.Store, spec job.Spec, chunks int) {
	t.Helper()
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	var cs []store.Chunk
	for i := range chunks {
		cs = append(cs, store.Chunk{Seq: int64(i), Items: []store.Item{{Index: int64(i), Data: []byte(fmt.Sprint(i))}}})
	}
	if err := s.PutChunks(ctx, spec.ID, cs); err != nil {
		t.Fatalf("PutChunks: %v", err)
	}
	if err := s.Seal(ctx, spec.ID, chunks); err != nil {
		t.Fatalf("Seal: %v", err)
	}
}

func testClaimDoneDrains(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, 5*time.Second)
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	p, err := s.Progress(ctx, spec.ID)
	if err != nil || p.Sealed || p.Drained() {
		t.Fatalf("fresh job progress = %+v, %v; want unsealed, not drained", p, err)
	}
	mustCreate(t, ctx, s, spec, 3)
	seen := map[int64]bool{}
	for range 3 {
		c, err := s.Claim(ctx, spec.ID, time.Second)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if c.Attempt() != 1 {
			t.Errorf("first claim attempt = %d; want 1", c.Attempt())
		}
		seen[c.Chunk().Items[0].Index] = true
		if err := c.Done(ctx); err != nil {
			t.Fatalf("Done: %v", err)
		}
	}
	if len(seen) != 3 {
		t.Errorf("claimed inputs %v; want 0, 1, 2", seen)
	}
	if _, err := s.Claim(ctx, spec.ID, 100*time.Millisecond); !errors.Is(err, store.ErrNoChunk) {
		t.Errorf("Claim on empty queue: %v; want ErrNoChunk", err)
	}
	p, err = s.Progress(ctx, spec.ID)
	if err != nil || !p.Drained() || p.Chunks != 3 {
		t.Errorf("progress = %+v, %v; want drained with 3 chunks", p, err)
	}
}

func testLeaseRedelivers(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, 700*time.Millisecond)
	mustCreate(t, ctx, s, spec, 1)
	c1, err := s.Claim(ctx, spec.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Progress(ctx, spec.ID)
	if p.InFlight != 1 || p.Drained() {
		t.Errorf("progress with a claim out = %+v; want 1 in flight", p)
	}
	// The claimer "dies": no Done, no Extend. The chunk must come back.
	c2, err := s.Claim(ctx, spec.ID, 5*time.Second)
	if err != nil {
		t.Fatalf("reclaim after lease: %v", err)
	}
	if c2.Chunk().Items[0].Index != c1.Chunk().Items[0].Index || c2.Attempt() != 2 {
		t.Errorf("reclaimed input %d attempt %d; want input %d attempt 2", c2.Chunk().Items[0].Index, c2.Attempt(), c1.Chunk().Items[0].Index)
	}
	if err := c2.Done(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Progress(ctx, spec.ID); !p.Drained() {
		t.Errorf("progress after Done = %+v; want drained", p)
	}
}

func testReturnRedelivers(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, time.Minute) // far longer than the test: only Return brings it back
	mustCreate(t, ctx, s, spec, 1)
	c1, err := s.Claim(ctx, spec.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, spec.ID, 100*time.Millisecond); !errors.Is(err, store.ErrNoChunk) {
		t.Fatalf("a leased chunk was claimed again (err %v)", err)
	}
	if err := c1.Return(ctx); err != nil {
		t.Fatalf("Return: %v", err)
	}
	c2, err := s.Claim(ctx, spec.ID, 5*time.Second)
	if err != nil {
		t.Fatalf("claim after Return: %v", err)
	}
	if c2.Chunk().Items[0].Index != c1.Chunk().Items[0].Index {
		t.Errorf("claimed input %d after Return; want %d", c2.Chunk().Items[0].Index, c1.Chunk().Items[0].Index)
	}
	if err := c2.Done(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Progress(ctx, spec.ID); !p.Drained() {
		t.Errorf("progress after Done = %+v; want drained", p)
	}
}

func testExtendKeepsLease(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, 600*time.Millisecond)
	mustCreate(t, ctx, s, spec, 1)
	c, err := s.Claim(ctx, spec.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := c.Extend(ctx); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if _, err := s.Claim(ctx, spec.ID, 150*time.Millisecond); !errors.Is(err, store.ErrNoChunk) {
			t.Fatalf("a chunk whose lease is extended was claimed again (err %v)", err)
		}
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, 10*time.Second)
	const n = 200
	mustCreate(t, ctx, s, spec, n)
	var mu sync.Mutex
	got := map[int64]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := s.Claim(ctx, spec.ID, 300*time.Millisecond)
				if errors.Is(err, store.ErrNoChunk) {
					return
				}
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				mu.Lock()
				got[c.Chunk().Items[0].Index]++
				mu.Unlock()
				if err := c.Done(ctx); err != nil {
					t.Errorf("Done: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Errorf("claimed %d distinct chunks; want %d", len(got), n)
	}
	for i, k := range got {
		if k != 1 {
			t.Errorf("chunk %d claimed %d times; want once", i, k)
		}
	}
}

func testWatch(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, time.Second)
	mustCreate(t, ctx, s, spec, 1)
	// Results written before the watch starts are delivered too.
	if err := s.PutResults(ctx, spec.ID, []store.Result{{Index: 0, Output: []byte("0")}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var results []store.Result
	w, err := s.WatchResults(ctx, spec.ID, func(rs []store.Result) {
		mu.Lock()
		results = append(results, rs...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := s.PutResults(ctx, spec.ID, []store.Result{
		{Index: 1, Output: []byte("2")},
		{Index: 2, Err: &store.CallError{Kind: store.KindPanic, Message: "boom", Stack: "main.f()"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(results) != 3 || string(results[1].Output) != "2" || results[2].Err == nil || results[2].Err.Message != "boom" {
		t.Errorf("watched results %+v; want 3 with input 2 failed", results)
	}
	mu.Unlock()

	var lines []store.LogLine
	lw, err := s.WatchLogs(ctx, spec.ID, func(ls []store.LogLine) { mu.Lock(); lines = append(lines, ls...); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Close()
	if err := lw.Sync(ctx); err != nil { // nothing written: returns at once
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.PutLogs(ctx, spec.ID, []store.LogLine{{Index: int64(i), Stream: store.Stdout, Text: fmt.Sprint("line ", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 5 {
		t.Fatalf("watched %d lines; want 5", len(lines))
	}
	for i, l := range lines {
		if l.Index != int64(i) || l.Text != fmt.Sprint("line ", i) {
			t.Errorf("line %d = %+v; want input %d in order", i, l, i)
		}
	}
}

func testJobs(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, time.Second)
	if _, err := s.Job(ctx, spec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Job before CreateJob: %v; want ErrNotFound", err)
	}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Job(ctx, spec.ID)
	if err != nil || got.ID != spec.ID || got.Inputs != spec.Inputs || got.Lease != spec.Lease {
		t.Errorf("Job = %+v, %v; want %+v", got, err, spec)
	}
	if _, err := s.LastHeartbeat(ctx, spec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LastHeartbeat before any: %v; want ErrNotFound", err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.Heartbeat(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	hb, err := s.LastHeartbeat(ctx, spec.ID)
	if err != nil || hb.Before(before) {
		t.Errorf("LastHeartbeat = %v, %v; want about now", hb, err)
	}
	if err := s.Release(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastHeartbeat(ctx, spec.ID); !errors.Is(err, store.ErrReleased) {
		t.Errorf("LastHeartbeat after Release: %v; want ErrReleased", err)
	}
	if err := s.CreateJob(ctx, job.Spec{ID: "../etc"}); err == nil {
		t.Error("CreateJob accepted an invalid job ID")
	}
}

func testUpload(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	u, ok := s.(store.Uploads)
	if !ok {
		t.Fatalf("%T does not implement store.Uploads", s)
	}
	spec := newSpec(t, time.Second)
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Upload(ctx, spec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Upload before any: %v; want ErrNotFound", err)
	}
	started := time.Now().Add(-3 * time.Second).UTC().Truncate(time.Millisecond)
	for _, n := range []int{1, 2} { // the second record replaces the first
		want := store.Upload{Inputs: 3, Uploaded: n, Started: started, Updated: started.Add(time.Duration(n) * time.Second)}
		if err := u.PutUpload(ctx, spec.ID, want); err != nil {
			t.Fatal(err)
		}
		got, err := u.Upload(ctx, spec.ID)
		if err != nil || got.Inputs != want.Inputs || got.Uploaded != want.Uploaded || !got.Started.Equal(want.Started) || !got.Updated.Equal(want.Updated) {
			t.Errorf("Upload = %+v, %v; want %+v", got, err, want)
		}
	}
	if err := u.PutUpload(ctx, "../etc", store.Upload{}); err == nil {
		t.Error("PutUpload accepted an invalid job ID")
	}
}

func testNodes(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	n := store.Node{ID: "node-a", CPUs: 4, TaskQueue: "node-node-a", Warm: 4, Updated: time.Now()}
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.ListNodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "node-a" || nodes[0].CPUs != 4 {
		t.Errorf("ListNodes = %+v, %v; want node-a", nodes, err)
	}
	if got, err := s.GetNode(ctx, "node-a"); err != nil || got.ID != "node-a" || got.TaskQueue != "node-node-a" {
		t.Errorf("GetNode = %+v, %v; want node-a", got, err)
	}
	if _, err := s.GetNode(ctx, "node-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode of a node never put: %v; want ErrNotFound", err)
	}
	if err := s.DeleteNode(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	if nodes, err := s.ListNodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("ListNodes after delete = %+v, %v; want none", nodes, err)
	}
	if _, err := s.GetNode(ctx, "node-a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode after delete: %v; want ErrNotFound", err)
	}
	if err := s.PutNode(ctx, store.Node{ID: "Bad ID!"}); err == nil {
		t.Error("PutNode accepted an invalid node ID")
	}
}

// testGrants: a grant put after the watch began reaches the node's watcher, and
// the node's alone; one put before it, or after its stop, does not.
func testGrants(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	g, ok := s.(store.Grants)
	if !ok {
		t.Fatalf("%T does not implement store.Grants", s)
	}
	spec := newSpec(t, time.Second)
	if err := g.PutGrant(ctx, "node-a", store.Grant{Spec: job.Spec{ID: "before"}, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	got := make(chan store.Grant, 10)
	stop, err := g.WatchGrants(ctx, "node-a", func(g store.Grant) { got <- g })
	if err != nil {
		t.Fatal(err)
	}
	others, err := g.WatchGrants(ctx, "node-b", func(g store.Grant) { t.Errorf("node-b was given %s, a grant of node-a", g.Spec.ID) })
	if err != nil {
		t.Fatal(err)
	}
	defer others()
	if err := g.PutGrant(ctx, "node-a", store.Grant{Spec: spec, Workers: 3}); err != nil {
		t.Fatal(err)
	}
	select {
	case gr := <-got:
		if gr.Spec.ID != spec.ID || gr.Workers != 3 || gr.Spec.Function != spec.Function {
			t.Errorf("grant = %+v; want %s on 3 workers", gr, spec.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a grant put after the watch began did not come within 10s")
	}
	stop()
	if err := g.PutGrant(ctx, "node-a", store.Grant{Spec: job.Spec{ID: "after"}, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(got)
	for gr := range got {
		t.Errorf("watch delivered %s, put before it began or after it stopped", gr.Spec.ID)
	}
	if err := g.PutGrant(ctx, "Bad ID!", store.Grant{}); err == nil {
		t.Error("PutGrant accepted an invalid node ID")
	}
}

func testDeleteInputs(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, time.Second)
	mustCreate(t, ctx, s, spec, 3)
	if err := s.DeleteInputs(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, spec.ID, 100*time.Millisecond); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Claim after DeleteInputs: %v; want ErrNotFound", err)
	}
	if _, err := s.Progress(ctx, spec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Progress after DeleteInputs: %v; want ErrNotFound", err)
	}
}

// countResults returns how many results the store holds for the job.
func countResults(t *testing.T, ctx context.Context, s store.Store, jobID string) int {
	t.Helper()
	var n atomic.Int64
	w, err := s.WatchResults(ctx, jobID, func(rs []store.Result) { n.Add(int64(len(rs))) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return int(n.Load())
}

// A store lists the jobs it holds records of, and DeleteJob deletes all of one
// job's and nothing of another's.
func testRecords(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	r, ok := s.(store.Records)
	if !ok {
		t.Fatalf("%T does not implement store.Records", s)
	}
	gone, kept := newSpec(t, time.Second), newSpec(t, time.Second)
	before := time.Now().Add(-time.Minute) // the store's clock may differ a little from ours
	for _, spec := range []job.Spec{gone, kept} {
		mustCreate(t, ctx, s, spec, 2)
		if err := s.PutResults(ctx, spec.ID, []store.Result{{Index: 0, Output: []byte("0")}, {Index: 1, Output: []byte("1")}}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutLogs(ctx, spec.ID, []store.LogLine{{Index: 0, Stream: store.Stdout, Text: "hi"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Heartbeat(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.(store.Uploads).PutUpload(ctx, spec.ID, store.Upload{Inputs: 2, Uploaded: 2}); err != nil {
			t.Fatal(err)
		}
	}
	listed := func() map[string]time.Time {
		t.Helper()
		rs, err := r.ListJobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]time.Time{}
		for _, rec := range rs {
			m[rec.ID] = rec.Updated
		}
		return m
	}
	got := listed()
	for _, spec := range []job.Spec{gone, kept} {
		if at, ok := got[spec.ID]; !ok || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("ListJobs gave job %s updated at %v (listed: %v); want it, updated about now", spec.ID, at, ok)
		}
	}
	for range 2 { // deleting again is no error
		if err := r.DeleteJob(ctx, gone.ID); err != nil {
			t.Fatalf("DeleteJob: %v", err)
		}
	}
	if _, ok := listed()[gone.ID]; ok {
		t.Errorf("ListJobs still gives job %s after DeleteJob", gone.ID)
	}
	if _, err := s.Job(ctx, gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Job after DeleteJob: %v; want ErrNotFound", err)
	}
	if _, err := s.LastHeartbeat(ctx, gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LastHeartbeat after DeleteJob: %v; want ErrNotFound", err)
	}
	if _, err := s.(store.Uploads).Upload(ctx, gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Upload after DeleteJob: %v; want ErrNotFound", err)
	}
	if n := countResults(t, ctx, s, gone.ID); n != 0 {
		t.Errorf("%d results left after DeleteJob; want none", n)
	}
	var lines atomic.Int64
	lw, err := s.WatchLogs(ctx, gone.ID, func(ls []store.LogLine) { lines.Add(int64(len(ls))) })
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Close()
	if err := lw.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := lines.Load(); n != 0 {
		t.Errorf("%d log lines left after DeleteJob; want none", n)
	}
	// The other job keeps everything.
	if _, err := s.Job(ctx, kept.ID); err != nil {
		t.Errorf("the other job's spec: %v", err)
	}
	if n := countResults(t, ctx, s, kept.ID); n != 2 {
		t.Errorf("the other job has %d results; want 2", n)
	}
	if _, ok := listed()[kept.ID]; !ok {
		t.Errorf("ListJobs no longer gives the other job")
	}
}

func testClaimHonoursCancel(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	spec := newSpec(t, time.Second)
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := s.Claim(cctx, spec.ID, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Claim after cancel: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Claim took %v to notice its context was cancelled; want it at once", d)
	}
	// A chunk written after the abandoned claim is still there to claim.
	mustCreate(t, ctx, s, spec, 1)
	c, err := s.Claim(ctx, spec.ID, 5*time.Second)
	if err != nil {
		t.Fatalf("Claim after an abandoned claim: %v", err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkDrain is a job's data-plane work on a backend: b.N chunks of two inputs
// drained by four workers that claim a chunk, store its two results and mark it
// done, while the caller watches the results arrive. It reports inputs per second
// and the time the queue took to drain.
func BenchmarkDrain(b *testing.B, s store.Store) {
	ctx := context.Background()
	spec := job.Spec{ID: job.NewID(time.Now(), ""), Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 2 * b.N, FuncCPU: 1, Lease: 10 * time.Second, ClientTimeout: time.Minute}
	if err := s.CreateJob(ctx, spec); err != nil {
		b.Fatal(err)
	}
	var cs []store.Chunk
	for i := range b.N {
		cs = append(cs, store.Chunk{Seq: int64(i), Items: []store.Item{{Index: int64(2 * i), Data: []byte("1")}, {Index: int64(2*i + 1), Data: []byte("2")}}})
	}
	if err := s.PutChunks(ctx, spec.ID, cs); err != nil {
		b.Fatal(err)
	}
	if err := s.Seal(ctx, spec.ID, b.N); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	all := make(chan struct{})
	w, err := s.WatchResults(ctx, spec.ID, func(rs []store.Result) {
		if got.Add(int64(len(rs))) == int64(2*b.N) {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				c, err := s.Claim(ctx, spec.ID, 200*time.Millisecond)
				if err != nil {
					return
				}
				var rs []store.Result
				for _, it := range c.Chunk().Items {
					rs = append(rs, store.Result{Index: it.Index, Output: it.Data})
				}
				if err := s.PutResults(ctx, spec.ID, rs); err != nil {
					b.Error(err)
				}
				if err := c.Done(ctx); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	drained := time.Since(start)
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("watched %d of %d results", got.Load(), 2*b.N)
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "inputs/s")
	b.ReportMetric(float64(drained.Milliseconds()), "drain-ms")
}
