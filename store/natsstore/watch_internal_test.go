package natsstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

// A watch whose consumer stops delivering (as nats.go's ordered consumer does
// after some errors while a server restarts, without a word) is restarted from
// the message after the last it delivered: nothing is lost or delivered twice.
func TestStalledWatchRestarts(t *testing.T) {
	watchCheck = 100 * time.Millisecond
	t.Cleanup(func() { watchCheck = 5 * time.Second })
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Connect(ctx, srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := job.NewID(time.Now(), "acme")
	spec := job.Spec{ID: id, Function: "f", Binary: fmt.Sprintf("%064d", 0), Inputs: 3, FuncCPU: 1, Lease: 5 * time.Second, ClientTimeout: time.Minute}
	if err := s.CreateJob(ctx, spec); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[int64]int{}
	sw, err := s.WatchResults(ctx, id, func(rs []store.Result) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			got[r.Index]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	w := sw.(*watcher)
	put := func(i int64) {
		t.Helper()
		if err := s.PutResults(ctx, id, []store.Result{{Index: i, Output: []byte("r")}}); err != nil {
			t.Fatal(err)
		}
	}
	put(0)
	if err := sw.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.cc.Stop() // the consumer dies silently
	w.mu.Unlock()
	put(1)
	put(2)
	start := time.Now()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second) // 100 times the check period
	defer scancel()
	if err := sw.Sync(sctx); err != nil {
		t.Fatalf("Sync after the consumer died: %v", err)
	}
	t.Logf("the stalled watch delivered again after %v", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	for i := int64(0); i < 3; i++ {
		if got[i] != 1 {
			t.Errorf("result %d delivered %d times; want once", i, got[i])
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.restarts != 1 {
		t.Errorf("the watch was restarted %d times; want once", w.restarts)
	}
}
