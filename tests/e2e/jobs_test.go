package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/status"
)

// ticking prints a line and takes a while, so that a job of it can be watched.
var ticking = burla.Func("ticking", func(ctx context.Context, x int) (int, error) {
	fmt.Printf("tick %d\n", x)
	time.Sleep(150 * time.Millisecond)
	if x < 0 {
		return 0, fmt.Errorf("negative input %d", x)
	}
	return x + 1, nil
})

// jobsCLI runs `burla jobs ARGS…` against the test cluster and returns its stdout
// and exit status.
func jobsCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	stdout, _, code := jobsCLIFull(t, args...)
	return stdout, code
}

// jobsCLIFull is jobsCLI with stderr too.
func jobsCLIFull(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(dev.Binary, append(append([]string{"jobs"}, args[:1]...),
		append([]string{"--temporal", dev.Addrs.Temporal, "--store", dev.Addrs.Store}, args[1:]...)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		t.Logf("burla jobs %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), stderr.String())
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("burla jobs %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), 0
}

// checkErrorLine checks that a failed command's last line on stderr is the JSON
// error line the README promises, with its exit status.
func checkErrorLine(t *testing.T, stderr string, code int) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var e struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || e.Code != code || e.Error == "" {
		t.Errorf("last line of stderr %q: %+v, %v; want {\"error\":…,\"code\":%d}", lines[len(lines)-1], e, err, code)
	}
}

func showJob(t *testing.T, id string) status.Job {
	t.Helper()
	out, code := jobsCLI(t, "show", id)
	if code != 0 {
		t.Fatalf("burla jobs show %s: exit %d, %q", id, code, out)
	}
	var j status.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("burla jobs show %s printed %q: %v", id, out, err)
	}
	return j
}

// eventually polls cond every 100ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s; last seen: %s", d, what, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestJobsCLI(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	inputs := make([]int, 40)
	for i := range inputs {
		inputs[i] = i
	}
	j, err := burla.Submit(ctx, ticking, inputs, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()

	// `logs -f` follows the job from its first line to its end.
	var (
		logs     string
		logsCode int
		logsDone sync.WaitGroup
	)
	logsDone.Add(1)
	go func() { defer logsDone.Done(); logs, logsCode = jobsCLI(t, "logs", id, "-f") }()

	eventually(t, 10*time.Second, "listed as Running", func() (bool, string) {
		out, _ := jobsCLI(t, "ls", "--state", "Running")
		return strings.Contains(out, `"id":"`+id+`"`), out
	})
	eventually(t, 10*time.Second, "shown running on nodes with progress", func() (bool, string) {
		s := showJob(t, id)
		busy := 0
		for _, n := range s.Nodes {
			busy += n.Busy
		}
		return s.State == job.StateRunning && s.Progress != nil && s.Progress.Sealed && busy > 0 && s.Function == "ticking" && s.Inputs == 40,
			fmt.Sprintf("%+v", s)
	})

	outs, err := j.Outputs(ctx)
	if err != nil || len(outs) != 40 || outs[39] != 40 {
		t.Fatalf("outputs %v, %v", outs, err)
	}
	logsDone.Wait()
	if logsCode != 0 || strings.Count(logs, "tick ") != 40 {
		t.Errorf("logs -f: exit %d, %d lines; want 0 and 40:\n%s", logsCode, strings.Count(logs, "tick "), logs)
	}
	eventually(t, 10*time.Second, "shown Succeeded", func() (bool, string) {
		s := showJob(t, id)
		return s.State == job.StateSucceeded && !s.Ended.IsZero(), fmt.Sprintf("%+v", s)
	})
	out, code := jobsCLI(t, "attach", id, "--results")
	if code != 0 || strings.Count(out, `"index":`) != 40 || !strings.Contains(out, `{"index":39,"output":40}`) {
		t.Errorf("attach --results to a finished job: exit %d, output:\n%s", code, out)
	}
	eventually(t, 10*time.Second, "listed as Succeeded with its function", func() (bool, string) {
		out, _ := jobsCLI(t, "ls", "--state", "Succeeded", "--function", "ticking")
		return strings.Contains(out, `"id":"`+id+`"`), out
	})
	if out, code := jobsCLI(t, "show", "j-doesnotexist"); code != 4 {
		t.Errorf("show of an unknown job: exit %d (%q); want 4", code, out)
	}
	if _, code := jobsCLI(t, "show", "not-a-job"); code != 1 {
		t.Errorf("show of a malformed ID: exit %d; want 1", code)
	}
}

func TestJobsCLIFailedAndCancelled(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	j, err := burla.Submit(ctx, ticking, []int{1, 2, -3, 4}, opts(burla.Detach())...)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := jobsCLIFull(t, "attach", j.ID())
	if code != 3 {
		t.Errorf("attach to a failing job: exit %d (%q); want 3", code, out)
	}
	checkErrorLine(t, stderr, 3)
	if _, stderr, code := jobsCLIFull(t, "show", "j-doesnotexist"); code != 4 {
		t.Errorf("show of an unknown job: exit %d; want 4", code)
	} else {
		checkErrorLine(t, stderr, 4)
	}
	if _, stderr, code := jobsCLIFull(t, "frobnicate", j.ID()); code != 2 {
		t.Errorf("an unknown jobs command: exit %d; want 2", code)
	} else {
		checkErrorLine(t, stderr, 2)
	}
	s := showJob(t, j.ID())
	if s.State != job.StateFailed || !strings.Contains(s.Error, "negative input -3") {
		t.Errorf("failed job shows %+v; want Failed with the input's error", s)
	}

	long := make([]int, 200)
	j, err = burla.Submit(ctx, ticking, long, opts(burla.Detach())...)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := jobsCLI(t, "cancel", j.ID()); code != 0 || !strings.Contains(out, "cancel_requested") {
		t.Fatalf("cancel: exit %d, %q", code, out)
	}
	eventually(t, 20*time.Second, "shown Cancelled", func() (bool, string) {
		s := showJob(t, j.ID())
		return s.State == job.StateCancelled, fmt.Sprintf("%+v", s)
	})
	waitStandby(t, 2)
}

func TestProgressBar(t *testing.T) {
	inputs := make([]int, 80)
	var stderr lockedBuffer
	_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), ticking, inputs,
		burla.OnCluster(dev.Cluster), burla.Spinner(true), burla.Output(&bytes.Buffer{}, &stderr))
	if err != nil {
		t.Fatal(err)
	}
	got := stderr.String()
	for _, want := range []string{"running on 2 nodes, 4 containers", "/80", "/s", "ETA", "█"} {
		if !strings.Contains(got, want) {
			t.Errorf("the progress bar never showed %q:\n%q", want, got[max(0, len(got)-2000):])
		}
	}
	if !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("the progress bar was not erased at the end: %q", got[max(0, len(got)-200):])
	}
}
