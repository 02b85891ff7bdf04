package faults

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// queueJobs is more jobs at once than Temporal admits updates in flight to one
// workflow (10): most of them wait in a queue for the cluster's two nodes.
const queueJobs = 50

// queuedDetail finds a waiting job's detail that says it is queued.
var queuedDetail = regexp.MustCompile(`"detail":"(queued behind[^"]*)"`)

// slowSquare holds a worker for a while, so that jobs queue behind one another.
var slowSquare = burla.Func("slow-square", func(ctx context.Context, x int) (int, error) {
	time.Sleep(200 * time.Millisecond)
	return x * x, nil
})

// 50 jobs at once on two nodes: every one completes, and one that waits says
// it is queued and behind how many.
func TestFiftyJobsAtOnce(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	start := time.Now()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
		ids    []string
		done   = map[string]bool{}
	)
	for n := range queueJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := []int{n, n + 1, n + 2, n + 3}
			var self string
			out, err := burla.RemoteParallelMap(ctx, slowSquare, in, opts(burla.OnStart(func(id string) {
				mu.Lock()
				ids, self = append(ids, id), id
				mu.Unlock()
			}))...)
			mu.Lock()
			done[self] = true
			mu.Unlock()
			if err != nil || fmt.Sprint(out) != fmt.Sprint([]int{n * n, (n + 1) * (n + 1), (n + 2) * (n + 2), (n + 3) * (n + 3)}) {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("job %d: %v, %v", n, out, err))
				mu.Unlock()
			}
		}()
	}
	// While they run, the last job in the queue that has started and not ended
	// says where it stands (job IDs sort by time, and so does the queue).
	queued := ""
	for deadline := time.Now().Add(2 * time.Minute); queued == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		mu.Lock()
		var last string
		for _, id := range ids {
			if !done[id] && id > last {
				last = id
			}
		}
		mu.Unlock()
		if last == "" {
			continue
		}
		out, _ := exec.Command(cluster.Binary, "jobs", "show", "--temporal", cluster.Addrs.Temporal, "--store", cluster.Addrs.Store, last).CombinedOutput()
		// Not on a terminal, the command prints JSON.
		if m := queuedDetail.FindSubmatch(out); m != nil {
			queued = string(m[1])
		}
	}
	wg.Wait()
	took := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("%d of %d jobs failed; the first: %s", len(failed), queueJobs, failed[0])
	}
	if queued == "" {
		t.Error("no waiting job said it was queued behind others (burla jobs show)")
	}
	t.Logf("%d jobs in %v; a waiting job said: %s", queueJobs, took.Round(10*time.Millisecond), queued)
	waitStandby(t, 2)
	checkHealthy(t)
	if !t.Failed() {
		record(row{fault: fmt.Sprintf("%d jobs at once (4 × 200 ms inputs each) on 2 nodes", queueJobs),
			outcome: "all completed with correct results; a waiting job's stall reason says how many it is queued behind", stall: -1, recover: -1,
			job: fmt.Sprintf("%v for all", took.Round(10*time.Millisecond))})
	}
}
