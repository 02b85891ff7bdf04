package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
)

// sleeper holds its worker for ms milliseconds, or until its call is cancelled.
var sleeper = burla.Func("sleeper", func(ctx context.Context, ms int) (int, error) {
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-ctx.Done():
	}
	return ms, nil
})

// TestStallSaysEveryNodeIsBusy occupies every node of the cluster with a detached
// job, starts a second job without Grow, and checks that the second job's
// progress line, `burla jobs show`, status.Get and the dashboard (its JSON API
// and its page) all say it waits, and for how long, because every node is busy
// with the first job, which they name. Once the first job is cancelled, the
// second gets the nodes and succeeds.
func TestStallSaysEveryNodeIsBusy(t *testing.T) {
	waitStandby(t, 2)
	ctx := testCtx(t, 4*time.Minute)
	tc, st := dev.Cluster.Temporal(), dev.Cluster.Store()

	// Job A takes both nodes' 4 CPUs with calls that sleep for ten minutes.
	hold := []int{600_000, 600_000, 600_000, 600_000}
	a, err := burla.Submit(ctx, sleeper, hold, opts(burla.Detach())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancelAndWait(t, a.ID()) })
	eventually(t, 30*time.Second, "job A running on both nodes", func() (bool, string) {
		j, err := status.Get(ctx, tc, st, a.ID())
		busy := 0
		for _, n := range j.Nodes {
			busy += n.Busy
		}
		// A job running its calls waits for nothing.
		return err == nil && j.State == job.StateRunning && busy == 4 && j.Waiting == nil,
			fmt.Sprintf("state %s, nodes %+v, waiting %+v, error %v", j.State, j.Nodes, j.Waiting, err)
	})

	var progress lockedBuffer
	b, err := burla.Submit(ctx, square, []int{1, 2, 3}, opts(burla.Spinner(true), burla.Output(io.Discard, &progress))...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		bOut  []int
		bErr  error
		bDone = make(chan struct{})
	)
	go func() { defer close(bDone); bOut, bErr = b.Outputs(ctx) }()
	t.Cleanup(func() {
		select {
		case <-bDone:
		default:
			b.Cancel(context.Background())
			<-bDone
		}
	})
	busy := "every node is busy with another job (" + a.ID() + ")"

	// status.Get, which the CLI and the dashboard read through.
	var w *status.Waiting
	eventually(t, 30*time.Second, "job B said to wait 2s or more for nodes busy with job A", func() (bool, string) {
		j, err := status.Get(ctx, tc, st, b.ID())
		w = j.Waiting
		return err == nil && w != nil && w.Reason == status.WaitNodesBusy && w.Detail == busy && w.Seconds >= 2,
			fmt.Sprintf("state %s, waiting %+v, error %v", j.State, w, err)
	})
	if since := time.Since(w.Since); since < 2*time.Second || since > time.Minute {
		t.Errorf("job B waiting since %v, %v ago; want since it started, a few seconds ago", w.Since, since)
	}

	// The SDK's progress line.
	line := regexp.MustCompile(`waiting ([0-9.hms]+): ` + regexp.QuoteMeta(busy))
	eventually(t, 10*time.Second, "the progress line saying job B has waited 1s or more for job A's nodes", func() (bool, string) {
		out := progress.String()
		m := line.FindAllStringSubmatch(out, -1)
		if len(m) == 0 {
			return false, lastLine(out)
		}
		d, err := time.ParseDuration(m[len(m)-1][1])
		return err == nil && d >= time.Second, m[len(m)-1][0]
	})

	// `burla jobs show`.
	if j := showJob(t, b.ID()); j.Waiting == nil || j.Waiting.Reason != status.WaitNodesBusy || j.Waiting.Detail != busy || j.Waiting.Seconds < 2 {
		t.Errorf("burla jobs show %s: waiting %+v; want %s, %q, 2s or more", b.ID(), j.Waiting, status.WaitNodesBusy, busy)
	}

	// The dashboard's API: the job, and its row in the list.
	var dj status.Job
	dashboardGet(t, "api/jobs/"+b.ID(), &dj)
	if dj.Waiting == nil || dj.Waiting.Reason != status.WaitNodesBusy || dj.Waiting.Detail != busy || dj.Waiting.Seconds < 2 {
		t.Errorf("dashboard: job %s waiting %+v; want %s, %q, 2s or more", b.ID(), dj.Waiting, status.WaitNodesBusy, busy)
	}
	var rows []status.Job
	dashboardGet(t, "api/jobs?limit=50", &rows)
	i := slices.IndexFunc(rows, func(j status.Job) bool { return j.ID == b.ID() })
	if i < 0 || rows[i].Waiting == nil || rows[i].Waiting.Reason != status.WaitNodesBusy {
		t.Errorf("dashboard: job list has no row for %s that says it waits for busy nodes: %+v", b.ID(), rows)
	}
	// And its page.
	br := startChromium(t)
	br.do(t, "open the dashboard", 30*time.Second, chromedp.Navigate(dev.Addrs.Dashboard))
	row := br.waitFor(t, "job B's row saying every node is busy with job A", 15*time.Second, `(id, busy) => {
		const w = document.querySelector('#jobs tr.job[data-id="' + id + '"] .waiting[data-reason="nodes-busy"]');
		return w && /^waiting [0-9.]+[hms]/.test(w.textContent) && w.textContent.endsWith(busy) ? w.textContent : false;
	}`, b.ID(), busy)
	t.Logf("job row: %s", row)
	br.do(t, "click job B's row", 10*time.Second,
		chromedp.Click(chromedp.CSS(`#jobs tr.job[data-id="`+b.ID()+`"] td`)),
		chromedp.WaitVisible(chromedp.ID("job")))
	br.waitFor(t, "job B's panel saying what it waits for", 10*time.Second, `(busy) => {
		const dd = document.querySelector('#job-details dd[data-key="Waiting"]');
		return dd && dd.textContent.includes(busy) && dd.textContent.includes("[nodes-busy]") ? dd.textContent : false;
	}`, busy)

	// A job with a StallTimeout fails with JobStalled, saying what it waited for.
	stallStart := time.Now()
	_, err = burla.RemoteParallelMap(ctx, square, []int{5}, opts(burla.StallTimeout(3*time.Second))...)
	if !burla.IsKind(err, burla.KindJobStalled) || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), "no input finished for 3s") {
		t.Fatalf("a job with StallTimeout(3s) behind job A: %v; want JobStalled saying every node is busy", err)
	}
	if took := time.Since(stallStart); took > 30*time.Second {
		t.Errorf("the stalled job took %v to fail", took)
	}

	// Once A is gone, B gets the nodes, and the diagnosis follows them until B runs.
	if err := a.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	seen := []status.Reason{w.Reason}
	for done := false; !done; {
		select {
		case <-bDone:
			done = true
		case <-ctx.Done():
			t.Fatalf("job B did not end after job A was cancelled; reasons seen %v", seen)
		case <-time.After(50 * time.Millisecond):
			if j, err := status.Get(ctx, tc, st, b.ID()); err == nil && j.Waiting != nil && j.Waiting.Reason != seen[len(seen)-1] {
				seen = append(seen, j.Waiting.Reason)
			}
		}
	}
	t.Logf("job B waited for, in turn: %v", seen)
	if bErr != nil || !slices.Equal(bOut, []int{1, 4, 9}) {
		t.Fatalf("job B = %v, %v; want [1 4 9]", bOut, bErr)
	}
}

// TestStallSaysNodesBoot empties the cluster's standby and starts a job with Grow:
// while the nodes started for it boot, status.Get says so, since when, and the
// progress line too if the boot lasts long enough for it to poll.
func TestStallSaysNodesBoot(t *testing.T) {
	waitStandby(t, 2)
	ctx := testCtx(t, 4*time.Minute)
	tc, st := dev.Cluster.Temporal(), dev.Cluster.Store()
	standby := clusterStatus(t).Standby
	empty := standby
	empty.Nodes, empty.MaxNodes = 0, 2
	setStandby(t, empty)
	t.Cleanup(func() {
		setStandby(t, standby)
		waitStandby(t, 2)
	})
	eventually(t, time.Minute, "the cluster without nodes", func() (bool, string) {
		cs := clusterStatus(t)
		return len(cs.Nodes) == 0, fmt.Sprintf("%d nodes", len(cs.Nodes))
	})

	var progress lockedBuffer
	c, err := burla.Submit(ctx, square, []int{1, 2, 3, 4}, opts(burla.Grow(), burla.Spinner(true), burla.Output(io.Discard, &progress))...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		cOut  []int
		cErr  error
		cDone = make(chan struct{})
	)
	go func() { defer close(cDone); cOut, cErr = c.Outputs(ctx) }()
	t.Cleanup(func() {
		select {
		case <-cDone:
		default:
			c.Cancel(context.Background())
			<-cDone
		}
	})
	booting := regexp.MustCompile(`^[12] nodes? booting$`)
	var (
		first, last time.Time
		w           *status.Waiting
		started     time.Time
		seen        []status.Reason
	)
	for done := false; !done; {
		select {
		case <-cDone:
			done = true
		case <-ctx.Done():
			t.Fatalf("job C did not end; reasons seen %v", seen)
		case <-time.After(20 * time.Millisecond):
			j, err := status.Get(ctx, tc, st, c.ID())
			if err != nil || j.Waiting == nil {
				continue
			}
			if len(seen) == 0 || seen[len(seen)-1] != j.Waiting.Reason {
				seen = append(seen, j.Waiting.Reason)
			}
			if j.Waiting.Reason == status.WaitNodesBooting {
				if !booting.MatchString(j.Waiting.Detail) {
					t.Errorf("job C's nodes booting: detail %q; want %s", j.Waiting.Detail, booting)
				}
				if first.IsZero() {
					first = time.Now()
				}
				last, w, started = time.Now(), j.Waiting, j.Started
			}
		}
	}
	t.Logf("job C waited for, in turn: %v; booting seen for %v", seen, last.Sub(first).Round(time.Millisecond))
	if cErr != nil || !slices.Equal(cOut, []int{1, 4, 9, 16}) {
		t.Fatalf("job C = %v, %v; want [1 4 9 16]", cOut, cErr)
	}
	if w == nil {
		t.Fatalf("job C was never said to wait for nodes booting; reasons seen %v", seen)
	}
	// Since is the job's start, or the nodes' boot, whichever came later: the
	// nodes were started for this job, so after it.
	if w.Since.Before(started) || w.Since.After(last) {
		t.Errorf("nodes booting since %v; want between the job's start %v and when it was seen %v", w.Since, started, last)
	}
	if last.Sub(first) >= 3*time.Second && !strings.Contains(progress.String(), "booting") {
		t.Errorf("the nodes booted for %v, and the progress line never said so: %q", last.Sub(first), lastLine(progress.String()))
	}
}

// cancelAndWait cancels a job and waits until it has ended and the cluster has
// its standby back.
func cancelAndWait(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc := dev.Cluster.Temporal()
	if err := tc.CancelWorkflow(ctx, id, ""); err != nil {
		if j, derr := status.Get(ctx, tc, dev.Cluster.Store(), id); derr != nil || !j.State.Terminal() {
			t.Errorf("cancel job %s: %v", id, err)
		}
	}
	_ = tc.GetWorkflow(ctx, id, "").Get(ctx, nil)
	waitStandby(t, 2)
}

func setStandby(t *testing.T, s control.StandbySpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := dev.Cluster.Temporal().UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: control.ClusterWorkflowID(control.DefaultCluster), UpdateName: control.UpdateSetStandby,
		Args: []any{s}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	if err != nil {
		t.Fatalf("set standby %+v: %v", s, err)
	}
}

// dashboardGet decodes the dashboard's answer to GET path.
func dashboardGet(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(dev.Addrs.Dashboard, "/") + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dashboard GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("dashboard GET %s: %v: %s", path, err, body)
	}
}

// lastLine is the last progress line drawn in out.
func lastLine(out string) string {
	for strings.HasSuffix(out, "\r\x1b[K") || strings.HasSuffix(out, "\n") {
		out = strings.TrimSuffix(strings.TrimSuffix(out, "\r\x1b[K"), "\n")
	}
	if i := strings.LastIndexAny(out, "\r\n"); i >= 0 {
		out = out[i+1:]
	}
	return out
}
