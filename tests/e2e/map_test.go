package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store/storeurl"
)

func TestThreeInputs(t *testing.T) {
	var mu sync.Mutex
	var lines []burla.LogLine
	out, err := burla.RemoteParallelMap(testCtx(t, time.Minute), double, []int{1, 2, 3},
		append(opts(), burla.OnLog(func(l burla.LogLine) { mu.Lock(); lines = append(lines, l); mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, []int{2, 4, 6}) {
		t.Errorf("outputs %v; want [2 4 6]", out)
	}
	mu.Lock()
	defer mu.Unlock()
	got := map[int]string{}
	for _, l := range lines {
		got[l.Index] = l.Text
	}
	if len(lines) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Errorf("printed %+v; want 1, 2, 3 from inputs 0, 1, 2", lines)
	}
}

func TestTenThousandInputsInOrder(t *testing.T) {
	in := make([]int, 10_000)
	for i := range in {
		in[i] = i
	}
	out, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), square, in, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d outputs; want %d", len(out), len(in))
	}
	for i, o := range out {
		if o != i*i {
			t.Fatalf("output %d = %d; want %d", i, o, i*i)
		}
	}
}

func TestStdoutAttributedToItsInput(t *testing.T) {
	var mu sync.Mutex
	var lines []burla.LogLine
	in := make([]int, 40)
	for i := range in {
		in[i] = i
	}
	_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), chatty, in,
		append(opts(), burla.OnLog(func(l burla.LogLine) { mu.Lock(); lines = append(lines, l); mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	perInput := map[int][]string{}
	for _, l := range lines {
		want := fmt.Sprintf("input %d ", l.Index)
		if !strings.HasPrefix(l.Text, want) {
			t.Errorf("line %q attributed to input %d", l.Text, l.Index)
		}
		if strings.HasSuffix(l.Text, "on stderr") != l.Stderr {
			t.Errorf("line %q: stderr=%v", l.Text, l.Stderr)
		}
		perInput[l.Index] = append(perInput[l.Index], l.Text)
	}
	for _, i := range in {
		if len(perInput[i]) != 3 {
			t.Errorf("input %d printed %q; want its 3 lines (the last without a newline)", i, perInput[i])
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Run("ReturnedError", func(t *testing.T) {
		var jobID string
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), failing, []int{1, 2, 3, 4}, opts(burla.OnStart(func(id string) { jobID = id }))...)
		re := remoteError(t, err)
		if re.Index != 2 || re.Kind != "error" || !strings.Contains(re.Message, "three is not allowed") {
			t.Errorf("got %+v; want input 2's returned error", re)
		}
		waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED)
		checkHealthy(t)
	})
	t.Run("Panic", func(t *testing.T) {
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), panicky, []int{0, 1, 2, 3}, opts()...)
		re := remoteError(t, err)
		if re.Index != 2 || re.Kind != "panic" || !strings.Contains(re.Message, "nil map") || !strings.Contains(re.Stack, "e2e") {
			t.Errorf("got %+v; want input 2's panic with a stack", re)
		}
		checkHealthy(t)
	})
	t.Run("Exit", func(t *testing.T) {
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), exiting, []int{0, 1, 2}, opts()...)
		re := remoteError(t, err)
		if re.Index != 1 || re.Kind != "exit" || !strings.Contains(re.Message, "status 3") {
			t.Errorf("got %+v; want input 1's exit with status 3", re)
		}
		checkHealthy(t)
	})
	t.Run("Timeout", func(t *testing.T) {
		start := time.Now()
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), hanging, []int{0, 1}, opts(burla.InputTimeout(time.Second))...)
		re := remoteError(t, err)
		if re.Index != 0 || re.Kind != "timeout" {
			t.Errorf("got %+v; want input 0's timeout", re)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("a 1s timeout took %v to report", d)
		}
		checkHealthy(t)
	})
	t.Run("UnencodableInput", func(t *testing.T) {
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), floats, []float64{1, 2, math.NaN()}, opts()...)
		var be *burla.Error
		if !errors.As(err, &be) || be.Kind != burla.KindBadInput || be.Index != 2 || !strings.Contains(err.Error(), "input 2") {
			t.Fatalf("error %v; want a BadInput error naming input 2", err)
		}
		checkHealthy(t)
	})
	t.Run("InexactInput", func(t *testing.T) {
		in := []map[string]any{{"id": 1}, {"id": uint64(1<<53 + 1)}}
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), echoAny, in, opts()...)
		var be *burla.Error
		if !errors.As(err, &be) || be.Kind != burla.KindBadInput || be.Index != 1 ||
			!strings.Contains(err.Error(), "input 1[id] holds the integer 9007199254740993 in an interface value") {
			t.Fatalf("error %v; want a BadInput error naming input 1's id", err)
		}
		out, err := burla.RemoteParallelMap(testCtx(t, time.Minute), echoAny, []map[string]any{{"id": 1 << 53}}, opts()...)
		if err != nil || len(out) != 1 || out[0]["id"] != float64(1<<53) {
			t.Errorf("2^53 in an interface value: %v, %v; want it back exactly", out, err)
		}
		checkHealthy(t)
	})
	t.Run("UnknownFunction", func(t *testing.T) {
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), clientOnly, []int{1}, opts()...)
		if !burla.IsKind(err, burla.KindUnknownFunction) || !strings.Contains(err.Error(), `"clientOnly"`) {
			t.Fatalf("error %v; want UnknownFunction naming clientOnly", err)
		}
		checkHealthy(t)
	})
}

func TestNoCluster(t *testing.T) {
	start := time.Now()
	_, err := burla.Dial(context.Background(), burla.Config{TemporalAddress: "127.0.0.1:1", StoreURL: "nats://127.0.0.1:1"})
	if !burla.IsKind(err, burla.KindNoCluster) || !strings.Contains(err.Error(), "burla dev") {
		t.Fatalf("error %v; want NoCluster saying to start `burla dev`", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to say no cluster is there; want a few seconds at most", d)
	}
}

func TestCancelStopsTheJob(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make([]int, 2000) // 2000 × 20ms on 4 workers: about 10s
	var jobID string
	started := make(chan struct{})
	go func() {
		<-started
		time.Sleep(time.Second)
		cancel()
	}()
	_, err := burla.RemoteParallelMap(ctx, sleepy, in, opts(burla.OnStart(func(id string) { jobID = id; close(started) }))...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want context.Canceled", err)
	}
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED)
	checkHealthy(t)
}

// waitForStatus waits for the job's workflow to close with the given status.
func waitForStatus(t *testing.T, jobID string, want enumspb.WorkflowExecutionStatus) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := dev.Cluster.Temporal().DescribeWorkflowExecution(context.Background(), jobID, "")
		if err != nil {
			t.Fatal(err)
		}
		status := d.GetWorkflowExecutionInfo().GetStatus()
		if status == want {
			return
		}
		if status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || time.Now().After(deadline) {
			t.Fatalf("job workflow %s is %v; want %v", jobID, status, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKilledWorkerLosesNothing(t *testing.T) {
	// 600 × 20ms on 4 workers: about 3s.
	mapKilling(t, 600, "container-worker")
	checkHealthy(t)
}

// mapKilling maps sleepy over n inputs and, once the first result is in (so workers
// are mid-chunk), kills one of the cluster's processes whose command line has word
// with SIGKILL. Every input must still be delivered exactly once, with its output.
func mapKilling(t *testing.T, n int, word string) {
	t.Helper()
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	seen := make([]int, n)
	killed := false
	for r, err := range burla.Stream(testCtx(t, 3*time.Minute), sleepy, in, opts(burla.Lease(time.Second))...) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Output != r.Index {
			t.Fatalf("output of input %d = %d", r.Index, r.Output)
		}
		seen[r.Index]++
		if !killed {
			pids := dev.Processes(word)
			if len(pids) == 0 {
				t.Fatalf("no %s processes found", word)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("input %d delivered %d times; want exactly once", i, k)
		}
	}
}

func TestDetachAndAttach(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	j, err := burla.Submit(ctx, square, []int{1, 2, 3, 4}, opts(burla.Detach())...)
	if err != nil {
		t.Fatal(err)
	}
	// Another handle, as a restarted program would get from the job's ID.
	again, err := burla.Attach[int](ctx, j.ID(), opts()...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := again.Outputs(ctx)
	if err != nil || !slices.Equal(out, []int{1, 4, 9, 16}) {
		t.Fatalf("attached outputs %v, %v; want [1 4 9 16]", out, err)
	}
}

// Inputs and outputs larger than a store record travel as blobs. Once the job
// has ended, the blob collector (every 2 s here) deletes its large inputs; its
// large outputs stay an hour after its client read them.
func TestLargeInputsAndOutputs(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	in := []string{"small", strings.Repeat("a", 3<<20), strings.Repeat("b", 300<<10)}
	var first, second string
	out, err := burla.RemoteParallelMap(ctx, length, in, opts(burla.OnStart(func(id string) { first = id }))...)
	if err != nil || !slices.Equal(out, []int{5, 3 << 20, 300 << 10}) {
		t.Fatalf("lengths %v, %v; want [5 %d %d]", out, err, 3<<20, 300<<10)
	}
	outs, err := burla.RemoteParallelMap(ctx, repeat, []int{1, 2 << 20}, opts(burla.OnStart(func(id string) { second = id }))...)
	if err != nil || len(outs) != 2 || outs[0] != "x" || len(outs[1]) != 2<<20 {
		t.Fatalf("repeat outputs of lengths %d, %v; want 1 and %d", len(outs), err, 2<<20)
	}
	st, err := storeurl.Open(ctx, dev.Addrs.Store, "e2e-collect")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ins, err := st.List(ctx, job.InputKey(first, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(ins) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the large input %s of a job that ended is still in the store 20 s later", ins[0].Key)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ok, err := st.Has(ctx, job.OutputKey(second, 1)); err != nil || !ok {
		t.Errorf("the large output of a job whose client read it just now is gone: %v, %v", ok, err)
	}
}
