package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// vanishingClient is the child process of TestVanishedClientLosesItsJob: it starts
// a long job on the cluster named by its environment, says the job's ID, and reads
// results until it is killed.
func vanishingClient() int {
	in := make([]int, 100_000)
	j, err := burla.Submit(context.Background(), sleepy, in, burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}), burla.ClientTimeout(2*time.Second))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("job:", j.ID())
	for range j.Results(context.Background()) {
	}
	return 0
}

// A client process that vanishes without a word (kill -9) loses its job once its
// heartbeat is overdue: the job's workflow ends with ClientGone.
func TestVanishedClientLosesItsJob(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestVanishedClientLosesItsJob$")
	cmd.Env = append(os.Environ(), "E2E_VANISHING_CLIENT=1",
		"BURLA_TEMPORAL_ADDRESS="+dev.Addrs.Temporal, "BURLA_STORE_URL="+dev.Addrs.Store)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var jobID string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "job: "); ok {
			jobID = id
			break
		}
		t.Log(sc.Text())
	}
	if jobID == "" {
		cmd.Process.Kill()
		t.Fatal("the client process never reported its job")
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Kill()
	start := time.Now()
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED)
	t.Logf("job ended %v after its client was killed (client timeout 2s)", time.Since(start).Round(100*time.Millisecond))
	checkHealthy(t)
}

// Stopping `burla dev` and starting it again on the same data directory keeps every
// job's history.
func TestRestartKeepsHistory(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	dir := t.TempDir()
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var jobID string
	out, err := burla.RemoteParallelMap(ctx, square, []int{7}, burla.OnCluster(d.Cluster), burla.Spinner(false),
		burla.OnLog(func(burla.LogLine) {}), burla.OnStart(func(id string) { jobID = id }))
	if err != nil || out[0] != 49 {
		d.Stop()
		t.Fatalf("job on the first cluster: %v, %v", out, err)
	}
	waitClosed(t, d, jobID)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err = clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	desc, err := d.Cluster.Temporal().DescribeWorkflowExecution(ctx, jobID, "")
	if err != nil {
		t.Fatalf("job %s after a restart: %v", jobID, err)
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("job %s after a restart is %v; want Completed", jobID, s)
	}
	// And its results are still there to attach to.
	j, err := burla.Attach[int](ctx, jobID, burla.OnCluster(d.Cluster), burla.Spinner(false))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := j.Outputs(ctx); err != nil || got[0] != 49 {
		t.Errorf("re-attached outputs %v, %v; want [49]", got, err)
	}
}

func waitClosed(t *testing.T, d *clustertest.Dev, jobID string) {
	t.Helper()
	for range 300 {
		desc, err := d.Cluster.Temporal().DescribeWorkflowExecution(context.Background(), jobID, "")
		if err == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s still running after 30s", jobID)
}

// A job that runs longer than the cluster's retention keeps every result: the
// retention counts from the job's end, never from a result's write. Here the
// retention is 2 s and the collector runs every 500 ms, and one input of a
// detached job sleeps 6 s: when a client attaches 4 s in, the first results are
// twice the retention old and all there. Once the job has ended, its records go
// a retention later.
func TestJobLongerThanRetentionKeepsItsResults(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	const retention = 2 * time.Second
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, CollectEvery: 500 * time.Millisecond, Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	on := []burla.Option{burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}
	in := []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 6000}
	j, err := burla.Submit(ctx, nap, in, append(on, burla.Detach())...)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	again, err := burla.Attach[int](ctx, j.ID(), on...)
	if err != nil {
		t.Fatalf("attach 4 s into a job with a 2 s retention: %v", err)
	}
	out, err := again.Outputs(ctx)
	if err != nil || !slices.Equal(out, in) {
		t.Fatalf("outputs of a job longer than the retention: %v, %v; want %v", out, err, in)
	}
	waitClosed(t, d, j.ID())
	ended := time.Now()
	st, err := storeurl.Open(ctx, d.Addrs.Store, "e2e-retention")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for {
		_, err := st.Job(ctx, j.ID())
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(ended) > 20*time.Second {
			t.Fatalf("job %s's records are still in the store 20 s after it ended (retention %v)", j.ID(), retention)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if gone := time.Since(ended); gone < retention-500*time.Millisecond {
		t.Errorf("job %s's records went %v after it ended; want no sooner than its %v retention", j.ID(), gone, retention)
	} else {
		t.Logf("records deleted %v after the job ended (retention %v)", gone.Round(100*time.Millisecond), retention)
	}
}
