// Package scale proves that the control plane's long-running watches do not
// crowd out its short work: with a watch running for each of 1 200 nodes (as many
// as 1 000 nodes and 200 attached jobs hold), a node's creation, an activity on
// the control queue, still starts at once. The nodes are NodeWorkflows of the
// real control plane over an embedded Temporal server, with a fake provider and
// node registry: lightweight, but the same workflows, workers and task queues.
package scale

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/temporalserver"
	"github.com/burla-temporal/burla/workers"
)

const watches = 1_200

// registry is a node registry in which every node is alive.
type registry struct{ store.Nodes }

func (registry) GetNode(_ context.Context, id string) (store.Node, error) {
	return store.Node{ID: id}, nil
}

// fakeProvider creates nodes at once and says when.
type fakeProvider struct {
	mu      sync.Mutex
	created map[string]time.Time
}

func (*fakeProvider) Name() string { return "fake" }
func (p *fakeProvider) Create(_ context.Context, n provider.NodeSpec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.created[n.ID] = time.Now()
	return nil
}
func (*fakeProvider) Delete(context.Context, provider.NodeSpec) error { return nil }
func (*fakeProvider) List(context.Context, string) ([]string, error)  { return nil, nil }
func (p *fakeProvider) when(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.created[id]
	return t, ok
}

func TestWatchesLeaveRoomForControlWork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := temporalserver.Start(ctx, temporalserver.Config{UIPort: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	tc, err := client.Dial(client.Options{HostPort: srv.FrontendHostPort(), Namespace: srv.Namespace(), Logger: sdklog.NewStructuredLogger(quiet)})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fake := &fakeProvider{created: map[string]time.Time{}}
	cp := workers.Control(tc, &activities.Control{Temporal: tc}, &activities.Nodes{Providers: provider.Set{"fake": fake}, Store: registry{}}, &activities.Env{})
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()

	// Nodes that have registered go straight to their watch (as after a
	// continue-as-new).
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, watches)
	slots := make(chan struct{}, 16) // starts in flight at once
	for i := range watches {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			id := fmt.Sprintf("s-%d", i)
			_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: control.NodeWorkflowID(id), TaskQueue: control.TaskQueueControl},
				control.WorkflowNode, control.NodeInput{Spec: provider.NodeSpec{ID: id, Cluster: "s", CPUs: 1}, Provider: "fake", ClusterWorkflowID: "cluster-s", Registered: true})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every watch is running once every node's workflow has scheduled its own;
	// the count stops growing if slots run out.
	n, grew := 0, time.Now()
	for n < watches && time.Since(grew) < 20*time.Second && time.Since(start) < 5*time.Minute {
		time.Sleep(time.Second)
		if m := pendingWatches(ctx, t, tc); m > n {
			n, grew = m, time.Now()
		}
	}
	if n < watches {
		t.Errorf("%d of %d watches running; the rest found no slot", n, watches)
	}
	t.Logf("%d watches running %v after the first node's start", n, time.Since(start).Round(100*time.Millisecond))

	// A new node: its creation runs on the control queue.
	asked := time.Now()
	id := "s-new"
	if _, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: control.NodeWorkflowID(id), TaskQueue: control.TaskQueueControl},
		control.WorkflowNode, control.NodeInput{Spec: provider.NodeSpec{ID: id, Cluster: "s", CPUs: 1}, Provider: "fake", ClusterWorkflowID: "cluster-s"}); err != nil {
		t.Fatal(err)
	}
	for {
		if at, ok := fake.when(id); ok {
			took := at.Sub(asked)
			t.Logf("with %d watches running, a node was created %v after it was asked for", watches, took.Round(time.Millisecond))
			if took > 10*time.Second {
				t.Errorf("creating a node took %v with %d watches running; want well under 10s", took, watches)
			}
			return
		}
		if time.Since(asked) > time.Minute {
			t.Fatalf("a node asked for with %d watches running was not created within a minute: the control queue's activity slots are taken", watches)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pendingWatches counts the node workflows whose watch has started.
func pendingWatches(ctx context.Context, t *testing.T, tc client.Client) int {
	t.Helper()
	n := 0
	for i := range watches {
		d, err := tc.DescribeWorkflowExecution(ctx, control.NodeWorkflowID(fmt.Sprintf("s-%d", i)), "")
		if err != nil {
			continue
		}
		for _, a := range d.GetPendingActivities() {
			if a.GetActivityType().GetName() == control.ActivityWatchNode && a.GetLastStartedTime() != nil {
				n++
			}
		}
	}
	return n
}
