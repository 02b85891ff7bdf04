package dockere2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var tiny = burla.Func("tiny", func(ctx context.Context, x int) (int, error) { return x + 1, nil })

func readyNodes(b *testing.B, d *clustertest.Dev) int {
	st, err := control.NewClient(d.Cluster.Temporal()).Status(context.Background(), control.DefaultCluster)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, nd := range st.Nodes {
		if nd.State == control.NodeReady {
			n++
		}
	}
	return n
}

// BenchmarkRuntimes runs the same small job on a 4-CPU node with the process runtime
// and with the docker runtime, side by side, and measures how long after a job the
// node is warm again (reset: every worker restarted, in a new container on docker).
//
//	CGO_ENABLED=0 go test -run '^$' -bench Runtimes -benchtime 1x ./tests/dockere2e/
func BenchmarkRuntimes(b *testing.B) {
	if dev == nil {
		b.Skip(skipMsg)
	}
	for b.Loop() {
		for _, rt := range []string{"process", "docker"} {
			ctx := context.Background()
			d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 4, Runtime: rt})
			if err != nil {
				b.Fatal(err)
			}
			var jobs, warm []time.Duration
			for range 10 {
				for readyNodes(b, d) < 1 {
					time.Sleep(20 * time.Millisecond)
				}
				time.Sleep(time.Second)
				start := time.Now()
				if _, err := burla.RemoteParallelMap(ctx, tiny, []int{1, 2, 3}, burla.OnCluster(d.Cluster), burla.Spinner(false)); err != nil {
					b.Fatal(err)
				}
				jobs = append(jobs, time.Since(start))
				// The node turns busy as the job ends and ready once it is reset.
				for readyNodes(b, d) == 1 && time.Since(start) < 2*time.Second {
					time.Sleep(5 * time.Millisecond)
				}
				for readyNodes(b, d) < 1 {
					time.Sleep(5 * time.Millisecond)
				}
				warm = append(warm, time.Since(start)-jobs[len(jobs)-1])
			}
			if err := d.Stop(); err != nil {
				b.Fatal(err)
			}
			slices.Sort(jobs)
			slices.Sort(warm)
			b.ReportMetric(float64(jobs[5].Microseconds())/1000, rt+"-job-p50-ms")
			b.ReportMetric(float64(warm[5].Microseconds())/1000, rt+"-warm-again-p50-ms")
			b.Logf("%s runtime, 1 node × 4 CPUs: 3-input job median %v (p90 %v); node warm again %v after the job (median of 10)",
				rt, jobs[5], jobs[9], warm[5])
		}
	}
}
