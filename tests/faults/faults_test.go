package faults

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// inputs is the size of every faulted job.
const inputs = 20_000

// faultAt is how many results are in when the fault is injected.
const faultAt = 3_000

func workInputs() []int {
	in := make([]int, inputs)
	for i := range in {
		in[i] = i
	}
	return in
}

// run is what a job's client saw.
type run struct {
	jobID    string
	seen     []int       // deliveries per input
	times    []time.Time // each result's arrival
	faultAt  time.Time   // when the fault was injected
	healthy  time.Time   // when the cluster was whole again after it
	start    time.Time
	end      time.Time
	err      error
	faultErr error
}

// check fails the test unless every input was delivered exactly once with its
// output; with partial, inputs may be missing (a cancelled job) but none doubled.
func (r *run) check(t *testing.T, partial bool) (delivered int) {
	t.Helper()
	bad := 0
	for i, k := range r.seen {
		delivered += min(k, 1)
		if k > 1 || (k == 0 && !partial) {
			if bad++; bad <= 5 {
				t.Errorf("input %d delivered %d times; want exactly once", i, k)
			}
		}
	}
	if bad > 5 {
		t.Errorf("… and %d more inputs not delivered exactly once", bad-5)
	}
	return delivered
}

// delivered counts the inputs whose result the client saw.
func (r *run) delivered() int {
	n := 0
	for _, k := range r.seen {
		if k > 0 {
			n++
		}
	}
	return n
}

// stall is the longest the client waited for a result after the fault.
func (r *run) stall() time.Duration {
	var longest time.Duration
	prev := r.faultAt
	for _, at := range r.times {
		if at.After(r.faultAt) {
			longest = max(longest, at.Sub(prev))
			prev = at
		}
	}
	return longest
}

// mapWithFault runs work over the inputs, calls fault (in its own goroutine, so
// that results keep being read) once faultAt results are in, and returns what the
// client saw.
func mapWithFault(t *testing.T, fault func() error, extra ...burla.Option) *run {
	t.Helper()
	r := &run{seen: make([]int, inputs), start: time.Now()}
	var wg sync.WaitGroup
	count := 0
	onStart := burla.OnStart(func(id string) {
		r.jobID = id
		lastJobMu.Lock()
		lastJobID = id
		lastJobMu.Unlock()
	})
	o := opts(append([]burla.Option{onStart}, extra...)...)
	for res, err := range burla.Stream(testCtx(t, 5*time.Minute), work, workInputs(), o...) {
		if err != nil {
			r.err = err
			break
		}
		if res.Output != 2*res.Index+1 {
			t.Fatalf("output of input %d = %d; want %d", res.Index, res.Output, 2*res.Index+1)
		}
		r.seen[res.Index]++
		r.times = append(r.times, time.Now())
		if count++; count == faultAt && fault != nil {
			r.faultAt = time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r.faultErr = fault(); r.faultErr == nil {
					r.healthy, r.faultErr = waitWhole(lastKilled)
				}
			}()
		}
	}
	r.end = time.Now()
	wg.Wait()
	if r.faultErr != nil {
		t.Fatalf("injecting the fault: %v", r.faultErr)
	}
	if fault != nil && r.faultAt.IsZero() {
		t.Fatalf("the job ended (%v) before %d results were in; the fault was never injected", r.err, faultAt)
	}
	return r
}

var (
	baselineOnce sync.Once
	baseline     time.Duration
)

// baselineJob is how long the same job takes with no fault, measured once.
func baselineJob(t *testing.T) time.Duration {
	baselineOnce.Do(func() {
		checkHealthy(t) // the program's upload and inspection are not the baseline's
		r := mapWithFault(t, nil)
		if r.err != nil {
			t.Fatalf("baseline job: %v", r.err)
		}
		r.check(t, false)
		baseline = r.end.Sub(r.start)
		record(row{fault: "none (baseline)", outcome: fmt.Sprintf("%d results, each once", inputs), stall: -1, recover: -1, job: baseline.Round(10 * time.Millisecond).String()})
	})
	if baseline == 0 {
		t.Fatal("no baseline")
	}
	return baseline
}

func jobTime(r *run, base time.Duration) string {
	d := r.end.Sub(r.start)
	return fmt.Sprintf("%v (%.1f× baseline)", d.Round(10*time.Millisecond), float64(d)/float64(base))
}

// faultCompletes runs a job with the fault and requires it to complete with every
// result exactly once, then records the row.
func faultCompletes(t *testing.T, name string, fault func() error) {
	base := baselineJob(t)
	r := mapWithFault(t, fault)
	if r.err != nil {
		t.Fatalf("the job failed after %d of %d results: %v\n%s", r.delivered(), inputs, r.err, diagnose(r.jobID))
	}
	r.check(t, false)
	waitForStatus(t, r.jobID, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
	rec := r.healthy.Sub(r.faultAt)
	t.Logf("on the way back: %s", wholeTrace)
	t.Logf("%s: the cluster was whole again %v after the fault; the longest wait for a result was %v; the job took %s", name, rec, r.stall(), jobTime(r, base))
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: name, outcome: fmt.Sprintf("completed; %d results, each once", inputs), stall: r.stall(), recover: rec, job: jobTime(r, base)})
	}
}

// killed is what a fault killed, so that waitWhole can tell the cluster healed from
// the cluster not yet noticing.
type killed struct {
	pid  int    // the process killed; it must be gone first
	node string // the node it took down; the cluster must have replaced it
}

var lastKilled killed // set by the fault before mapWithFault calls waitWhole

func killOne(word string) func() error {
	return func() error {
		pids := cluster.Processes(word)
		if len(pids) == 0 {
			return fmt.Errorf("no %s process", word)
		}
		lastKilled = killed{pid: pids[0]}
		if word == "node-agent" {
			lastKilled.node = clustertest.Flag(pids[0], "--id")
		}
		return syscall.Kill(pids[0], syscall.SIGKILL)
	}
}

func TestKillContainerWorker(t *testing.T) {
	faultCompletes(t, "kill -9 a container worker", killOne("container-worker"))
}

func TestKillNodeAgent(t *testing.T) {
	faultCompletes(t, "kill -9 a node agent", killOne("node-agent"))
	waitStandby(t, 2)
}

func TestKillControlPlane(t *testing.T) {
	faultCompletes(t, "kill -9 the control plane (restarted 1s later)", func() error {
		if err := cluster.Kill(clustertest.ControlPlane); err != nil {
			return err
		}
		time.Sleep(time.Second) // as a supervisor would restart it
		_, err := cluster.Start(context.Background(), clustertest.ControlPlane)
		return err
	})
}

func TestRestartTemporal(t *testing.T) {
	faultCompletes(t, "restart the Temporal server (SQLite kept)", func() error {
		_, err := cluster.Restart(context.Background(), clustertest.Temporal)
		return err
	})
}

func TestRestartNATS(t *testing.T) {
	faultCompletes(t, "restart the NATS server (streams kept)", func() error {
		_, err := cluster.Restart(context.Background(), clustertest.NATS)
		return err
	})
}

// A detached job outlives its client: the client is killed mid-job, and a new one
// attaches by ID and reads every result exactly once.
func TestKillClientAndAttach(t *testing.T) {
	base := baselineJob(t)
	c := startClient(t, "detached")
	jobID := c.waitFor(t, "job: ")
	c.waitFor(t, "progress")
	killed := time.Now()
	c.cmd.Process.Kill()
	c.cmd.Wait()
	j, err := burla.Attach[int](testCtx(t, 5*time.Minute), jobID, opts()...)
	if err != nil {
		t.Fatalf("attach to %s: %v", jobID, err)
	}
	r := &run{seen: make([]int, inputs), start: c.started, faultAt: killed}
	for res, err := range j.Results(testCtx(t, 5*time.Minute)) {
		if err != nil {
			t.Fatalf("attached job: %v", err)
		}
		if res.Output != 2*res.Index+1 {
			t.Fatalf("output of input %d = %d", res.Index, res.Output)
		}
		r.seen[res.Index]++
		r.times = append(r.times, time.Now())
	}
	r.end = time.Now()
	r.check(t, false)
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED)
	firstAfter := r.times[0].Sub(killed)
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: "kill -9 the client of a detached job; attach by ID", outcome: fmt.Sprintf("completed; %d results, each once, read by the new client", inputs),
			stall: firstAfter, recover: firstAfter, job: jobTime(r, base)})
	}
}

// A client that vanishes without detaching loses its job after its heartbeat
// timeout, and the job's nodes go back to standby.
func TestVanishedClient(t *testing.T) {
	c := startClient(t, "vanishing")
	jobID := c.waitFor(t, "job: ")
	c.waitFor(t, "progress")
	killed := time.Now()
	c.cmd.Process.Kill()
	c.cmd.Wait()
	waitForStatus(t, jobID, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED)
	ended := time.Since(killed)
	back := waitStandby(t, 2)
	t.Logf("job ended %v after its client was killed (client timeout 2s); nodes back in standby %v after", ended, time.Since(killed))
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: "kill -9 the client of an attached job", outcome: fmt.Sprintf("failed ClientGone %v after the kill (timeout 2s); nodes back in standby", ended.Round(100*time.Millisecond)),
			stall: -1, recover: back.Sub(killed), job: "-"})
	}
}

// `burla jobs cancel` ends a running job: its client gets a Cancelled error, no
// result is delivered twice, and the nodes go back to standby.
func TestCancelFromCLI(t *testing.T) {
	var cancelled time.Time
	r := mapWithFault(t, func() error {
		cancelled = time.Now()
		out, err := exec.Command(cluster.Binary, "jobs", "cancel", "--temporal", cluster.Addrs.Temporal, lastJob()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("burla jobs cancel: %v\n%s", err, out)
		}
		return nil
	})
	if !burla.IsKind(r.err, burla.KindCancelled) {
		t.Fatalf("the client got %v; want a Cancelled error", r.err)
	}
	delivered := r.check(t, true)
	waitForStatus(t, r.jobID, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED)
	back := waitStandby(t, 2)
	t.Logf("client error: %v; %d of %d results delivered before the cancel took", r.err, delivered, inputs)
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: "burla jobs cancel", outcome: fmt.Sprintf("cancelled (client: Cancelled error); %d results before it, none twice; nodes back in standby", delivered),
			stall: -1, recover: back.Sub(cancelled), job: "-"})
	}
}

var (
	lastJobMu sync.Mutex
	lastJobID string
)

// lastJob is the newest job's ID, as the faulted map's OnStart saw it.
func lastJob() string {
	lastJobMu.Lock()
	defer lastJobMu.Unlock()
	return lastJobID
}

// waitForStatus waits for the job's workflow to close with the given status.
func waitForStatus(t *testing.T, jobID string, want enumspb.WorkflowExecutionStatus) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		d, err := cluster.Cluster.Temporal().DescribeWorkflowExecution(context.Background(), jobID, "")
		if err == nil {
			status := d.GetWorkflowExecutionInfo().GetStatus()
			if status == want {
				return
			}
			if status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				t.Fatalf("job workflow %s is %v; want %v\n%s", jobID, status, want, diagnose(jobID))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job workflow %s not %v after a minute (last error %v)\n%s", jobID, want, err, diagnose(jobID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wholeTrace is what the last waitWhole saw on its way, for the test log.
var wholeTrace string

// waitWhole waits until the cluster is whole again: the process k names gone, two
// node agents and four container workers running, and the control plane answering
// for two live nodes, neither the one k took down.
func waitWhole(k killed) (time.Time, error) {
	defer func() { lastKilled = killed{} }()
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	var last, seen string
	defer func() { wholeTrace = seen }()
	for k.pid > 0 && clustertest.Alive(k.pid) {
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("process %d still alive 2 minutes after kill -9", k.pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		if last != "" && !strings.HasSuffix(seen, last+"; ") {
			seen += fmt.Sprintf("%v: %s; ", time.Since(start).Round(10*time.Millisecond), last)
		}
		agents, workers := len(cluster.Processes("node-agent")), len(cluster.Processes("container-worker"))
		last = fmt.Sprintf("%d node agents, %d container workers", agents, workers)
		if agents == 2 && workers == 4 {
			st, err := clusterStatus(time.Second)
			if err == nil {
				live := 0
				for id, nd := range st.Nodes {
					if id != k.node && (nd.State == control.NodeReady || nd.State == control.NodeAssigned) {
						live++
					}
				}
				if live == 2 {
					return time.Now(), nil
				}
				last += fmt.Sprintf(", %d live nodes in the cluster's state", live)
			} else {
				last += ", " + err.Error()
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the cluster was not whole 2 minutes after the fault: %s", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func clusterStatus(timeout time.Duration) (control.ClusterState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return control.NewClient(cluster.Cluster.Temporal()).Status(ctx, control.DefaultCluster)
}

// diagnose describes a job that ended wrongly: its queue's progress, and what its
// workflow's activities last said.
func diagnose(jobID string) string {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := natsstore.Connect(ctx, cluster.Addrs.Store, "faults-diagnose"); err == nil {
		p, err := st.Progress(ctx, jobID)
		fmt.Fprintf(&b, "queue: %+v (error %v)\n", p, err)
		st.Close()
	}
	d, err := cluster.Cluster.Temporal().DescribeWorkflowExecution(ctx, jobID, "")
	if err != nil {
		return b.String() + err.Error()
	}
	for _, a := range d.GetPendingActivities() {
		fmt.Fprintf(&b, "pending %s (%v, attempt %d): last heartbeat %v %v; last failure %v\n", a.GetActivityType().GetName(), a.GetState(), a.GetAttempt(),
			a.GetLastHeartbeatTime().AsTime().Format(time.StampMilli), a.GetHeartbeatDetails(), a.GetLastFailure())
	}
	iter := cluster.Cluster.Temporal().GetWorkflowHistory(ctx, jobID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			break
		}
		fmt.Fprintf(&b, "%s %v\n", e.GetEventTime().AsTime().Format(time.StampMilli), e.GetEventType())
	}
	return b.String()
}

// waitStandby waits until the cluster has n ready nodes and no job holds any, and
// returns when that was first seen.
func waitStandby(t *testing.T, n int) time.Time {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		st, err := clusterStatus(5 * time.Second)
		if err == nil {
			ready := 0
			for _, nd := range st.Nodes {
				if nd.State == control.NodeReady {
					ready++
				}
			}
			if ready >= n && len(st.Jobs) == 0 {
				return time.Now()
			}
			last = fmt.Sprintf("%d ready nodes, %d jobs", ready, len(st.Jobs))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not back to %d standby nodes after 2 minutes: %s", n, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The client processes the tests start and kill: this test binary with clientRole
// set in its environment.
const clientRole = "BURLA_FAULTS_CLIENT"

type client struct {
	cmd     *exec.Cmd
	out     *bufio.Scanner
	started time.Time
}

func startClient(t *testing.T, role string, args ...string) *client {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run", "^$"}, args...)...)
	cmd.Env = append(os.Environ(), clientRole+"="+role,
		"BURLA_TEMPORAL_ADDRESS="+cluster.Addrs.Temporal, "BURLA_STORE_URL="+cluster.Addrs.Store)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{cmd: cmd, out: bufio.NewScanner(out), started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return c
}

// waitFor reads the client's output up to a line starting with prefix and returns
// the rest of that line.
func (c *client) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	for c.out.Scan() {
		if rest, ok := strings.CutPrefix(c.out.Text(), prefix); ok {
			return rest
		}
		t.Log("client:", c.out.Text())
	}
	t.Fatalf("the client process ended before it said %q", prefix)
	return ""
}

// runClient is a client process's main.
func runClient(role string) int {
	ctx := context.Background()
	base := []burla.Option{burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}
	switch role {
	case "detached", "vanishing":
		o := append(base, burla.ClientTimeout(2*time.Second))
		if role == "detached" {
			o = append(o, burla.Detach())
		}
		j, err := burla.Submit(ctx, work, workInputs(), o...)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("job:", j.ID())
		n := 0
		for _, err := range j.Results(ctx) {
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			if n++; n == faultAt {
				fmt.Println("progress")
			}
		}
		return 0
	case "load":
		return loadClient(ctx, base)
	case "submit-and-go", "detached-upload":
		return detachedClient(ctx, base)
	}
	fmt.Fprintf(os.Stderr, "unknown client role %q\n", role)
	return 2
}

// A node agent frozen for 7 s (SIGSTOP, then SIGCONT), longer than its record's
// time to live: the job completes with every result once, whether the cluster
// waits for the node or replaces it.
func TestPauseNodeAgent(t *testing.T) {
	faultCompletes(t, "SIGSTOP a node agent for 7 s, then SIGCONT", func() error {
		pids := cluster.Processes("node-agent")
		if len(pids) == 0 {
			return fmt.Errorf("no node-agent process")
		}
		if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(7 * time.Second)
		return syscall.Kill(pids[0], syscall.SIGCONT)
	})
	waitStandby(t, 2)
}
