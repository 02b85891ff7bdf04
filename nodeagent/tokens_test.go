package nodeagent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/wire"
)

// The agent hands every worker the access token it reaches the store with: each
// worker as it starts, before any job, and each worker the next token once the
// agent has it; a failed ask leaves the workers their last token.
func TestPoolHandsEveryWorkerTheLatestToken(t *testing.T) {
	p, rt := newTestPool(t, 2)
	var mu sync.Mutex
	current, fail := "tok-1", false
	tokens := func(context.Context) (string, time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return "", time.Time{}, errors.New("metadata server down")
		}
		return current, time.Now().Add(time.Hour), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() { p.feedTokens(ctx, tokens, 20*time.Millisecond); close(fed) }()
	t.Cleanup(func() { cancel(); <-fed })

	hasToken := func(w *fakeWorker, v string) bool {
		c, ok := w.last(wire.OpToken)
		return ok && c.Token != nil && c.Token.Value == v && time.Until(c.Token.Expiry) > 50*time.Minute
	}
	waitFor(t, "both warm workers given tok-1", func() bool { return hasToken(rt.worker(0), "tok-1") && hasToken(rt.worker(1), "tok-1") })

	// The workers that replace a job's are given the token before anything else.
	spec := job.Spec{ID: job.NewID(time.Now(), "acme"), Binary: strings.Repeat("a", 64), FuncCPU: 1}
	if _, err := p.Start(context.Background(), spec, 2); err != nil {
		t.Fatal(err)
	}
	served := rt.worker(0)
	p.Stop(context.Background(), spec.ID)
	waitFor(t, "a fresh worker in slot 0", func() bool { return rt.worker(0) != served })
	fresh := rt.worker(0)
	waitFor(t, "the fresh worker given a command", func() bool { return len(fresh.commands()) > 0 })
	if cmds := fresh.commands(); cmds[0] != wire.OpToken {
		t.Errorf("a fresh worker's commands: %v; want the token first", cmds)
	}

	// A failed ask changes nothing; the next token reaches every worker.
	mu.Lock()
	fail = true
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	fail, current = false, "tok-2"
	mu.Unlock()
	waitFor(t, "both workers given tok-2", func() bool { return hasToken(rt.worker(0), "tok-2") && hasToken(rt.worker(1), "tok-2") })
	for _, w := range []*fakeWorker{rt.worker(0), rt.worker(1)} {
		w.mu.Lock()
		for _, c := range w.cmds {
			if c.Op == wire.OpToken && !slices.Contains([]string{"tok-1", "tok-2"}, c.Token.Value) {
				t.Errorf("worker %d was handed %q", w.slot, c.Token.Value)
			}
		}
		w.mu.Unlock()
	}
}
