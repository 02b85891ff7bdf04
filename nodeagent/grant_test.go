package nodeagent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

func grantSpec(tenant string) job.Spec {
	return job.Spec{ID: job.NewID(time.Now(), tenant), Function: "f", Binary: strings.Repeat("a", 64), Inputs: 4, FuncCPU: 1,
		Lease: time.Minute, ClientTimeout: time.Minute, Version: job.SpecVersion}
}

// A job begins on its workers as soon as its grant comes; its activity then
// takes it over as it runs: the same workers, each given the job once, and
// the failures they report reach the activity.
func TestPoolBeginsAJobOnItsGrant(t *testing.T) {
	p, rt := newTestPool(t, 2)
	spec := grantSpec("acme")
	p.Begin(context.Background(), store.Grant{Spec: spec, Workers: 2})
	if id, _, busy := p.state(); id != spec.ID || busy != 2 {
		t.Fatalf("after the grant the node is on %q with %d busy workers; want %s on 2", id, busy, spec.ID)
	}
	run := "run:" + spec.ID + ":/worker-0/prog"
	waitFor(t, "worker 0 given the job", func() bool { return slices.Contains(rt.worker(0).commands(), run) })
	errs, err := p.Start(context.Background(), spec, 2)
	if err != nil {
		t.Fatalf("the activity could not take the job over: %v", err)
	}
	if got := rt.starts(); got != 2 {
		t.Errorf("%d workers started; want the 2 warm ones only", got)
	}
	time.Sleep(50 * time.Millisecond) // a second command, had the takeover sent one, has arrived
	if got := rt.worker(0).commands(); !slices.Equal(got, []string{run}) {
		t.Errorf("worker 0 was sent %v; want the job once", got)
	}
	p.mu.Lock()
	p.run.errs <- errTest
	p.mu.Unlock()
	if got := <-errs; got != errTest {
		t.Errorf("the activity got %v; want the worker's failure", got)
	}
	p.Stop(context.Background(), spec.ID)
	if id, _, _ := p.state(); id != "" {
		t.Errorf("after Stop the node is on %q", id)
	}
}

var errTest = errorString("call failed")

type errorString string

func (e errorString) Error() string { return string(e) }

// A job begun on a grant that no activity followed (its job went away as it
// started) gives way to the next job, to the node's reset, and, unfollowed, is
// stopped after grantLapse.
func TestPoolDropsAGrantNoActivityFollowed(t *testing.T) {
	t.Run("next job", func(t *testing.T) {
		p, rt := newTestPool(t, 2)
		gone := grantSpec("acme")
		p.Begin(context.Background(), store.Grant{Spec: gone, Workers: 2})
		next := grantSpec("globex")
		if _, err := p.Start(context.Background(), next, 2); err != nil {
			t.Fatalf("the next job's activity: %v; want it to displace the unfollowed grant", err)
		}
		waitFor(t, "the next job on both workers", func() bool {
			id, _, busy := p.state()
			return id == next.ID && busy == 2
		})
		for _, w := range []*fakeWorker{rt.worker(0), rt.worker(1)} {
			if slices.ContainsFunc(w.commands(), func(c string) bool { return strings.Contains(c, gone.ID) }) {
				t.Errorf("worker %d runs the next job after serving the dropped one", w.slot)
			}
		}
	})
	t.Run("reset", func(t *testing.T) {
		p, _ := newTestPool(t, 2)
		p.Begin(context.Background(), store.Grant{Spec: grantSpec("acme"), Workers: 2})
		if err := p.Reset(context.Background()); err != nil {
			t.Fatalf("Reset with an unfollowed grant: %v", err)
		}
		if id, warm, busy := p.state(); id != "" || warm != 2 || busy != 0 {
			t.Errorf("after the reset: job %q, %d warm, %d busy; want none, 2, 0", id, warm, busy)
		}
	})
	t.Run("lapse", func(t *testing.T) {
		defer func(d time.Duration) { grantLapse = d }(grantLapse)
		grantLapse = 50 * time.Millisecond
		p, _ := newTestPool(t, 2)
		spec := grantSpec("acme")
		p.Begin(context.Background(), store.Grant{Spec: spec, Workers: 2})
		waitFor(t, "the unfollowed grant to lapse", func() bool { id, _, _ := p.state(); return id == "" })
		// Its activity, had it come late, starts the job again.
		if _, err := p.Start(context.Background(), spec, 2); err != nil {
			t.Fatalf("a late activity: %v", err)
		}
		p.Stop(context.Background(), spec.ID)
	})
	t.Run("another activity's job", func(t *testing.T) {
		p, _ := newTestPool(t, 2)
		held := grantSpec("acme")
		if _, err := p.Start(context.Background(), held, 2); err != nil {
			t.Fatal(err)
		}
		p.Begin(context.Background(), store.Grant{Spec: grantSpec("globex"), Workers: 2})
		if id, _, _ := p.state(); id != held.ID {
			t.Errorf("a grant took the node from the job an activity holds: on %q", id)
		}
		p.Stop(context.Background(), held.ID)
	})
}

// The next job's activity, on a node the cluster handed over as the last job
// ended, waits for the last job to stop rather than failing: its start takes
// fresh workers as they come.
func TestPoolNextJobWaitsForTheLastToStop(t *testing.T) {
	p, rt := newTestPool(t, 2)
	last := grantSpec("acme")
	if _, err := p.Start(context.Background(), last, 2); err != nil {
		t.Fatal(err)
	}
	served := []*fakeWorker{rt.worker(0), rt.worker(1)}
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Stop(context.Background(), last.ID)
	}()
	next := grantSpec("globex")
	if _, err := p.Start(context.Background(), next, 2); err != nil {
		t.Fatalf("the next job's activity while the last stops: %v", err)
	}
	waitFor(t, "the next job on two workers", func() bool { id, _, busy := p.state(); return id == next.ID && busy == 2 })
	for _, w := range served {
		if slices.ContainsFunc(w.commands(), func(c string) bool { return strings.Contains(c, next.ID) }) {
			t.Errorf("worker %d, which served the last job, got the next", w.slot)
		}
	}
	p.Stop(context.Background(), next.ID)
}
