// Package bench measures a warm local cluster: the latency of a small job and the
// throughput of a large one, each beside a baseline measured in the same run (the
// same function over the same inputs on a local goroutine pool: the limit).
//
//	make bench      # or: go test -run '^$' -bench . -benchtime 1x ./tests/bench/
package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/names"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/workflows"
)

var dev *clustertest.Dev

func TestMain(m *testing.M) {
	burla.Main()
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // no benchmarks asked for: no cluster needed
	}
	var err error
	dev, err = clustertest.Start(context.Background(), clustertest.Options{Nodes: 2, CPUs: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: start cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stop cluster:", err)
	}
	os.RemoveAll(dev.Dir)
	os.Exit(code)
}

func trivial(ctx context.Context, x int) (int, error) { return x + 1, nil }

var trivialF = burla.Func("trivial", trivial)

func opts() []burla.Option {
	return []burla.Option{burla.OnCluster(dev.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}
}

// local is the baseline: fn over inputs on one goroutine per CPU, outputs in order.
func local(inputs []int) []int {
	out := make([]int, len(inputs))
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(inputs); i += workers {
				out[i], _ = trivial(context.Background(), inputs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// BenchmarkThreeInputJob runs a 3-input job 20 times per iteration on the warm
// cluster (standby ready before each run) and reports the median and p90 wall time.
func BenchmarkThreeInputJob(b *testing.B) {
	ctx := context.Background()
	in := []int{1, 2, 3}
	if _, err := burla.RemoteParallelMap(ctx, trivialF, in, opts()...); err != nil { // warm up
		b.Fatal(err)
	}
	var remote, base []time.Duration
	for b.Loop() {
		for range 20 {
			waitStandby(b, 2)
			start := time.Now()
			if _, err := burla.RemoteParallelMap(ctx, trivialF, in, opts()...); err != nil {
				b.Fatal(err)
			}
			remote = append(remote, time.Since(start))
			start = time.Now()
			local(in)
			base = append(base, time.Since(start))
		}
	}
	p50, p90, lp50 := percentile(remote, 0.5), percentile(remote, 0.9), percentile(base, 0.5)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p90.Microseconds())/1000, "p90-ms")
	b.ReportMetric(float64(lp50.Microseconds())/1000, "local-p50-ms")
	b.Logf("3-input job over %d runs: p50 %v, p90 %v; local goroutine pool p50 %v (%.0f× faster)",
		len(remote), p50, p90, lp50, float64(p50)/float64(max(lp50, time.Nanosecond)))
}

// BenchmarkThroughput runs 100 000 trivial inputs in one job and reports inputs per
// second, beside the local pool's.
func BenchmarkThroughput(b *testing.B) {
	ctx := context.Background()
	in := make([]int, 100_000)
	for i := range in {
		in[i] = i
	}
	var remote, base time.Duration
	for b.Loop() {
		waitStandby(b, 2)
		start := time.Now()
		out, err := burla.RemoteParallelMap(ctx, trivialF, in, opts()...)
		if err != nil {
			b.Fatal(err)
		}
		remote += time.Since(start)
		if out[len(out)-1] != len(in) {
			b.Fatalf("last output %d; want %d", out[len(out)-1], len(in))
		}
		start = time.Now()
		local(in)
		base += time.Since(start)
	}
	rate := float64(len(in)*b.N) / remote.Seconds()
	lrate := float64(len(in)*b.N) / base.Seconds()
	b.ReportMetric(rate, "inputs/s")
	b.ReportMetric(lrate, "local-inputs/s")
	b.Logf("100 000 trivial inputs: %.0f inputs/s on the cluster (%v per job); local goroutine pool %.0f inputs/s (ratio %.4f)",
		rate, remote/time.Duration(b.N), lrate, rate/lrate)
}

// BenchmarkFirstResult measures, on a warm cluster, the time from a job's start to
// its first result, median of 10.
func BenchmarkFirstResult(b *testing.B) {
	ctx := context.Background()
	in := []int{1, 2, 3, 4}
	var firsts []time.Duration
	for b.Loop() {
		for range 10 {
			waitStandby(b, 2)
			start := time.Now()
			for _, err := range burla.Stream(ctx, trivialF, in, opts()...) {
				if err != nil {
					b.Fatal(err)
				}
				firsts = append(firsts, time.Since(start))
				break
			}
		}
	}
	p50 := percentile(firsts, 0.5)
	b.ReportMetric(float64(p50.Microseconds())/1000, "first-result-p50-ms")
	b.Logf("job start to first result over %d runs: median %v, p90 %v", len(firsts), p50, percentile(firsts, 0.9))
}

// BenchmarkClusterUp measures the time from starting a cluster's ClusterWorkflow
// (what `burla cluster up` does) to all its standby nodes ready, median of 10, on a
// second cluster beside the dev cluster's.
func BenchmarkClusterUp(b *testing.B) {
	ctx := context.Background()
	tc := dev.Cluster.Temporal()
	var ups []time.Duration
	for b.Loop() {
		for i := range 10 {
			name := fmt.Sprintf("bench%d", i)
			id := names.ClusterWorkflowID(name)
			start := time.Now()
			_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: names.TaskQueueControl}, names.WorkflowCluster,
				workflows.ClusterInput{State: workflows.ClusterState{Name: name, Standby: workflows.StandbySpec{Nodes: 2, CPUs: 1, Provider: "local"}}})
			if err != nil {
				b.Fatal(err)
			}
			waitReady(b, name, 2)
			ups = append(ups, time.Since(start))
			h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: names.UpdateShutdown, WaitForStage: client.WorkflowUpdateStageCompleted})
			if err == nil {
				err = h.Get(ctx, nil)
			}
			if err == nil {
				err = tc.GetWorkflow(ctx, id, "").Get(ctx, nil)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	p50 := percentile(ups, 0.5)
	b.ReportMetric(float64(p50.Microseconds())/1000, "up-p50-ms")
	b.Logf("cluster up to 2 standby nodes ready over %d runs: median %v, p90 %v", len(ups), p50, percentile(ups, 0.9))
}

// waitStandby waits for the dev cluster's standby, then lets it settle: a node turns
// ready as its reset ends, and a user starting the next job by hand finds it settled.
func waitStandby(b *testing.B, n int) {
	waitReady(b, names.DefaultCluster, n)
	time.Sleep(*settle)
}

// settle is how long a cluster has been ready when a measured job starts.
var settle = flag.Duration("settle", time.Second, "how long standby is ready before each measured job")

// waitReady waits until cluster has n ready nodes.
func waitReady(b *testing.B, cluster string, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		v, err := dev.Cluster.Temporal().QueryWorkflow(context.Background(), names.ClusterWorkflowID(cluster), "", names.QueryStatus)
		if err == nil {
			var st workflows.ClusterState
			if err := v.Get(&st); err == nil {
				ready := 0
				for _, nd := range st.Nodes {
					if nd.State == workflows.NodeReady {
						ready++
					}
				}
				if ready >= n {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("cluster %s: %d nodes not ready within a minute", cluster, n)
}
