package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store/natsstore"
)

// goInputs is the size of the jobs a detached client submits and leaves: large
// enough that their upload outlasts the start of the job by far.
const goInputs = 300_000

// "Submit and go home": a detached client exits as soon as Submit returns. Its job
// has every input and completes; a new client attaches and reads every result
// exactly once.
func TestDetachedClientExitsAfterSubmit(t *testing.T) {
	c := startClient(t, "submit-and-go")
	jobID := c.waitFor(t, "job: ")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("the client: %v", err)
	}
	submitted := time.Since(c.started)
	j, err := burla.Attach[int](testCtx(t, 5*time.Minute), jobID, opts()...)
	if err != nil {
		t.Fatalf("attach to %s: %v", jobID, err)
	}
	seen := make([]int, goInputs)
	n := 0
	for res, err := range j.Results(testCtx(t, 5*time.Minute)) {
		if err != nil {
			t.Fatalf("the job after its client exited: %v", err)
		}
		if res.Output != res.Index*res.Index {
			t.Fatalf("output of input %d = %d", res.Index, res.Output)
		}
		if seen[res.Index]++; seen[res.Index] == 1 {
			n++
		}
	}
	if n != goInputs {
		t.Fatalf("%d distinct results; want %d", n, goInputs)
	}
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: fmt.Sprintf("a detached client exits as soon as Submit returns (%d inputs)", goInputs),
			outcome: fmt.Sprintf("completed; Submit returned after %v, once every input was stored; every result once, read by a new client", submitted.Round(100*time.Millisecond)),
			stall:   -1, recover: -1, job: "-"})
	}
}

// A detached client killed while its inputs upload loses its job: it fails with
// ClientGone within the client timeout, and its nodes go back to standby.
func TestDetachedClientKilledMidUpload(t *testing.T) {
	c := startClient(t, "detached-upload")
	jobID := c.waitFor(t, "job: ")
	killed := time.Now()
	c.cmd.Process.Kill()
	c.cmd.Wait()
	ctx := testCtx(t, time.Minute)
	st, err := natsstore.Connect(ctx, cluster.Addrs.Store, "faults-upload")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if p, err := st.Progress(ctx, jobID); err != nil || p.Sealed {
		t.Fatalf("the job's queue after the kill: %+v, %v; want it unsealed (the upload must still be under way)", p, err)
	}
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED)
	ended := time.Since(killed)
	werr := cluster.Cluster.Temporal().GetWorkflow(ctx, jobID, "").Get(ctx, nil)
	if !control.ErrClientGone.Is(werr) {
		t.Fatalf("the job failed with %v; want ClientGone", werr)
	}
	back := waitStandby(t, 2)
	t.Logf("job failed %v after its client was killed mid-upload: %v", ended, werr)
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: "kill -9 a detached client while its inputs upload", outcome: fmt.Sprintf("failed ClientGone %v after the kill (timeout 2s); nodes back in standby", ended.Round(100*time.Millisecond)),
			stall: -1, recover: back.Sub(killed), job: "-"})
	}
}

// detachedClient is the client of the tests above: it submits goInputs inputs
// detached, says the job's ID as soon as the job has started, and exits once
// Submit returns.
func detachedClient(ctx context.Context, base []burla.Option) int {
	in := make([]int, goInputs)
	for i := range in {
		in[i] = i
	}
	o := append(base, burla.Detach(), burla.ClientTimeout(2*time.Second),
		burla.OnStart(func(id string) { fmt.Println("job:", id) }))
	if _, err := burla.Submit(ctx, square, in, o...); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// A job terminated from outside (an operator's `temporal workflow terminate`)
// never runs its end: its client gets a Terminated error at once, and the
// cluster takes its nodes back within a minute.
func TestTerminateJob(t *testing.T) {
	var terminated time.Time
	r := mapWithFault(t, func() error {
		terminated = time.Now()
		return cluster.Cluster.Temporal().TerminateWorkflow(context.Background(), lastJob(), "", "the faults suite plays an operator")
	})
	if !burla.IsKind(r.err, burla.KindTerminated) {
		t.Fatalf("the client got %v; want a Terminated error", r.err)
	}
	delivered := r.check(t, true)
	waitForStatus(t, r.jobID, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED)
	back := waitStandby(t, 2)
	if took := back.Sub(terminated); took > time.Minute {
		t.Errorf("the nodes were back in standby %v after the terminate; want within a minute", took)
	}
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: "terminate the job's workflow (`temporal workflow terminate`)", outcome: fmt.Sprintf("client: Terminated error; %d results before it, none twice; nodes taken back by the cluster", delivered),
			stall: -1, recover: back.Sub(terminated), job: "-"})
	}
}
