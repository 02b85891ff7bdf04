package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// Control holds the activities the control-plane worker runs.
type Control struct {
	Nodes store.Nodes
	Queue store.Queue
	Jobs  store.Jobs
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics, if set, count what the activities do.
	Metrics *ControlMetrics
	// Temporal sends the job workflow's updates to its cluster and tells the
	// cluster which jobs have ended.
	Temporal TemporalClient
	// Blobs, if set, is where FinishJob deletes a finished job's environment.
	Blobs blob.Store
	// Grants, if set, relays the cluster's grants to their nodes as soon as a
	// reserve gets them (ReserveNodes).
	Grants store.Grants

	marked sync.Map // program key → when FinishJob last marked it used (markUsed)
}

func (c *Control) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// PlaceNodes picks nodes for a job: idle nodes first, then the largest, until the
// job's parallelism (inputs, max parallelism) is covered. It is a simple placement
// that reads the live-node registry; the cluster workflow will replace it.
func (c *Control) PlaceNodes(ctx context.Context, in control.PlaceInput) (control.PlaceOutput, error) {
	nodes, err := c.Nodes.ListNodes(ctx)
	if err != nil {
		return control.PlaceOutput{}, fmt.Errorf("place job %s: %w", in.Spec.ID, err)
	}
	out, err := Place(in.Spec, nodes)
	if m := c.Metrics; m != nil {
		m.NodesLive.Set(float64(len(nodes)))
		if err != nil {
			m.PlacementFailed.Inc()
		} else {
			m.JobsPlaced.Inc()
		}
	}
	return out, err
}

// Place is PlaceNodes' decision, apart from its I/O.
func Place(spec job.Spec, nodes []store.Node) (control.PlaceOutput, error) {
	if len(nodes) == 0 {
		return control.PlaceOutput{}, control.ErrNoNodes.New(
			"the cluster has no live nodes; start some with `burla dev --nodes N` (or wait for the cluster's nodes to register)", nil)
	}
	slices.SortFunc(nodes, func(a, b store.Node) int {
		if (a.Job == "") != (b.Job == "") {
			if a.Job == "" {
				return -1
			}
			return 1
		}
		if a.CPUs != b.CPUs {
			return b.CPUs - a.CPUs
		}
		return cmp.Compare(a.ID, b.ID)
	})
	want := spec.Inputs
	if spec.MaxParallelism > 0 {
		want = min(want, spec.MaxParallelism)
	}
	want = max(want, 1)
	var out control.PlaceOutput
	largest := 0
	for _, n := range nodes {
		largest = max(largest, n.CPUs)
		slots := n.CPUs / spec.FuncCPU
		if spec.FuncRAMMB > 0 && n.RAMMB > 0 {
			slots = min(slots, n.RAMMB/spec.FuncRAMMB)
		}
		if slots < 1 {
			continue
		}
		slots = min(slots, want)
		out.Nodes = append(out.Nodes, control.Assignment{NodeID: n.ID, TaskQueue: n.TaskQueue, Workers: slots})
		if want -= slots; want == 0 {
			break
		}
	}
	if len(out.Nodes) == 0 {
		return control.PlaceOutput{}, control.ErrNoNodes.New(
			fmt.Sprintf("no node can run a call with func_cpu=%d func_ram=%dMB (the largest node has %d CPUs)", spec.FuncCPU, spec.FuncRAMMB, largest), nil)
	}
	return out, nil
}

// storeTimeout bounds one read of the store in a long-running activity.
const storeTimeout = 10 * time.Second

// WatchClient returns a ClientGone error once the job's client has not heartbeated for
// Timeout, and runs until then or until it is cancelled. It returns nil once the
// client has released the job (store.Jobs.Release): it has read every result; or,
// with UntilSealed, once the job's inputs are all in its queue.
func (c *Control) WatchClient(ctx context.Context, in control.WatchInput) error {
	poll := in.Poll
	if poll <= 0 {
		poll = time.Second
	}
	start := c.now()
	t := time.NewTicker(poll)
	defer t.Stop()
	// Silence is judged by this process's clock alone: a beat is seen when the
	// heartbeat's value changes, and the client's silence counts from when its
	// last change was seen. The value is the client's own time, which may be
	// far off ours (a laptop's clock 30 s behind would otherwise look silent).
	var beat time.Time // the last value read
	seen := start      // when a new value was last seen
	// back is when the store answered again after it could not be read: the
	// client could not heartbeat either, so its silence counts from then.
	var back time.Time
	unreachable := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		activity.RecordHeartbeat(ctx)
		if in.UntilSealed {
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			p, err := c.Queue.Progress(sctx, in.JobID)
			cancel()
			if err == nil && p.Sealed {
				return nil // the job no longer needs its client
			}
		}
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		last, err := c.Jobs.LastHeartbeat(sctx, in.JobID)
		cancel()
		switch {
		case errors.Is(err, store.ErrReleased):
			return nil // the client has every result: the nodes end the job
		case errors.Is(err, store.ErrNotFound):
			last = time.Time{}
		case err != nil:
			unreachable = true
			continue // the store is unreachable: that says nothing about the client
		}
		if unreachable {
			back, unreachable = c.now(), false
		}
		if !last.Equal(beat) {
			beat, seen = last, c.now()
		}
		if seen.Before(back) {
			seen = back
		}
		if silent := c.now().Sub(seen); silent > in.Timeout {
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			p, err := c.Queue.Progress(sctx, in.JobID)
			cancel()
			if err == nil && p.Drained() {
				// Every input has its result stored: the client may well have read
				// them all and gone. The nodes end the job; it is not the client's.
				continue
			}
			if c.Metrics != nil {
				c.Metrics.ClientsLost.Inc()
			}
			if in.UntilSealed {
				return control.ErrClientGone.New(
					fmt.Sprintf("the client of this detached job stopped heartbeating %v ago (timeout %v) before every input was uploaded; the job cannot finish without them: submit it again",
						silent.Round(time.Second), in.Timeout), nil)
			}
			return control.ErrClientGone.New(
				fmt.Sprintf("the client stopped heartbeating %v ago (timeout %v); run with burla.Detach() to keep a job going without its client", silent.Round(time.Second), in.Timeout), nil)
		}
	}
}

// FinishJob drops what is left of a finished job's input queue, and its
// environment variables (job.EnvKey), secrets that no worker reads once the job
// has ended. Results and logs stay for the store's retention period so that the
// job can still be read.
func (c *Control) FinishJob(ctx context.Context, in control.FinishInput) error {
	if err := c.Queue.DeleteInputs(ctx, in.JobID); err != nil {
		return err
	}
	if c.Blobs != nil {
		if err := c.Blobs.Delete(ctx, job.EnvKey(in.JobID)); err != nil {
			return fmt.Errorf("finish job %s: delete its environment: %w", in.JobID, err)
		}
	}
	if err := c.markUsed(ctx, in.JobID, in.Binary); err != nil {
		return fmt.Errorf("finish job %s: %w", in.JobID, err)
	}
	if c.Metrics != nil {
		c.Metrics.JobsFinished(cmp.Or(string(in.State), "unknown")).Inc()
	}
	return nil
}
