// The benchmarks measure a warm local cluster, each figure beside a baseline measured
// in the same run (the same function over the same inputs on a local goroutine pool:
// the limit): a 3-input job's latency, the throughput of 100 000 and 1 000 000
// printing inputs, the parallel efficiency of 400 inputs of 10 ms, the bytes per
// second of 1 GiB of inputs, 10 000 000 inputs in one call with the client's peak
// RSS, the time to a first result and to a cluster's standby. Every figure is also
// printed as a "bench:" line.
//
//	make bench      # or: go test -run '^$' -bench . -benchtime 1x ./tests/bench/
//	go test -run '^$' -bench Throughput -benchtime 1x ./tests/bench/ -args -nodes 1 -cpus 4

package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/sync/errgroup"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var dev *clustertest.Dev

func TestMain(m *testing.M) {
	burla.Main()
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // no benchmarks asked for: no cluster needed
	}
	var err error
	dev, err = clustertest.Start(context.Background(), clustertest.Options{Nodes: *nodes, CPUs: *cpus})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: start cluster:", err)
		os.Exit(1)
	}
	// A warm cluster: the program uploaded and inspected, as after a user's first job.
	if _, err := burla.RemoteParallelMap(context.Background(), printingF, []int{1, 2, 3}, opts()...); err != nil {
		fmt.Fprintln(os.Stderr, "bench: warm-up job:", err)
		dev.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stop cluster:", err)
	}
	if *out != "" && code == 0 {
		if err := writeResults(*out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func trivial(ctx context.Context, x int) (int, error) { return x + 1, nil }

// printing is the trivial function that prints one line, as most real functions do.
func printing(ctx context.Context, x int) (int, error) {
	fmt.Println("input", x)
	return x + 1, nil
}

// sleepy stands for a call that waits on something for 10 ms.
func sleepy(ctx context.Context, x int) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return x, nil
}

// slow stands for a call of 400 ms, as a small job's calls are.
func slow(ctx context.Context, x int) (int, error) {
	time.Sleep(400 * time.Millisecond)
	return x, nil
}

// size takes a large input and returns its length.
func size(ctx context.Context, s string) (int, error) { return len(s), nil }

var (
	trivialF  = burla.Func("trivial", trivial)
	printingF = burla.Func("printing", printing)
	sleepyF   = burla.Func("sleepy", sleepy)
	slowF     = burla.Func("slow", slow)
	sizeF     = burla.Func("size", size)
)

// opts runs jobs on the dev cluster with the SDK's own printing of the calls'
// lines, into io.Discard: the client does the work a terminal user's would.
func opts() []burla.Option {
	return []burla.Option{burla.OnCluster(dev.Cluster), burla.Spinner(false), burla.Output(io.Discard, io.Discard)}
}

// workers is how many calls the dev cluster runs at once.
func workers() int { return *nodes * *cpus }

// local is the baseline: fn over inputs on n goroutines, outputs in order, with
// what fn prints going to /dev/null as the cluster's goes to io.Discard.
func local[In, Out any](fn func(context.Context, In) (Out, error), inputs []In, n int) []Out {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		panic(err)
	}
	stdout := os.Stdout
	os.Stdout = null
	defer func() { os.Stdout = stdout; null.Close() }()
	out := make([]Out, len(inputs))
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(inputs); i += n {
				out[i], _ = fn(context.Background(), inputs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// beside times, once standby is ready, a job of f over inputs on the cluster and
// then fn over the same inputs on a local pool of n goroutines (the baseline); the
// job's outputs must be the pool's.
func beside[In any, Out comparable](tb testing.TB, ctx context.Context, f *burla.Function[In, Out], fn func(context.Context, In) (Out, error), inputs []In, n int) (remote, base time.Duration) {
	tb.Helper()
	waitStandby(tb, *nodes)
	start := time.Now()
	out, err := burla.RemoteParallelMap(ctx, f, inputs, opts()...)
	if err != nil {
		tb.Fatal(err)
	}
	remote = time.Since(start)
	start = time.Now()
	want := local(fn, inputs, n)
	base = time.Since(start)
	if !slices.Equal(out, want) {
		i := 0
		for i < min(len(out), len(want)) && out[i] == want[i] {
			i++
		}
		tb.Fatalf("%d outputs from the cluster, %d from the local pool; they differ first at input %d", len(out), len(want), i)
	}
	return remote, base
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func ints(n int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	return in
}

// BenchmarkThreeInputJob runs a 3-input job 50 times on the warm cluster (standby
// ready before each run) and reports the median and p90 wall time, beside the
// local pool's and a bare Temporal workflow's on the same server.
func BenchmarkThreeInputJob(b *testing.B) {
	ctx := context.Background()
	if _, err := burla.RemoteParallelMap(ctx, printingF, []int{1, 2, 3}, opts()...); err != nil { // warm up
		b.Fatal(err)
	}
	var small smallJobs
	for b.Loop() {
		small.measure(b, ctx, *runs)
	}
	p50, p90, lp50, bp50 := percentile(small.remote, 0.5), percentile(small.remote, 0.9), percentile(small.local, 0.5), percentile(small.bare, 0.5)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p90), "p90-ms")
	b.ReportMetric(ms(lp50), "local-p50-ms")
	b.ReportMetric(ms(bp50), "bare-workflow-p50-ms")
	report(b, "3-input job, %d runs: p50 %.1f ms, p90 %.1f ms; local pool p50 %.3f ms; a bare Temporal workflow p50 %.1f ms (job/bare %.1f×)",
		len(small.remote), ms(p50), ms(p90), ms(lp50), ms(bp50), float64(p50)/float64(max(bp50, time.Nanosecond)))
	record(rowThreeInputs, fmt.Sprintf("p50 %.1f ms, p90 %.1f ms", ms(p50), ms(p90)),
		fmt.Sprintf("p50 %.3f ms; a bare Temporal workflow on the same server p50 %.1f ms", ms(lp50), ms(bp50)))
}

// smallJobs are the timings of 3-input jobs, each beside the local pool's and a
// bare Temporal workflow's (one start and its result, the floor of any job that
// Temporal runs), taken in turn so that the machine's noise falls on all three.
type smallJobs struct{ remote, local, bare []time.Duration }

func (s *smallJobs) measure(tb testing.TB, ctx context.Context, n int) {
	tb.Helper()
	bare := startBare(tb)
	defer bare.Stop()
	in := []int{1, 2, 3}
	for range n {
		waitStandby(tb, *nodes)
		start := time.Now()
		if _, err := burla.RemoteParallelMap(ctx, printingF, in, opts()...); err != nil {
			tb.Fatal(err)
		}
		s.remote = append(s.remote, time.Since(start))
		start = time.Now()
		local(printing, in, runtime.NumCPU())
		s.local = append(s.local, time.Since(start))
		start = time.Now()
		bare.run(tb, ctx)
		s.bare = append(s.bare, time.Since(start))
	}
}

// bareWorkflow is the baseline of a small job: a workflow that does nothing, on a
// worker of this process on the dev cluster's Temporal server.
type bareWorkflow struct {
	worker.Worker
	tc client.Client
	n  int
}

const bareQueue, bareName = "bench-bare", "BenchBare"

func startBare(tb testing.TB) *bareWorkflow {
	tb.Helper()
	tc := dev.Cluster.Temporal()
	w := worker.New(tc, bareQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(workflow.Context) error { return nil }, workflow.RegisterOptions{Name: bareName})
	if err := w.Start(); err != nil {
		tb.Fatal(err)
	}
	b := &bareWorkflow{Worker: w, tc: tc}
	b.run(tb, context.Background()) // the worker polling, as the cluster's are
	return b
}

func (b *bareWorkflow) run(tb testing.TB, ctx context.Context) {
	tb.Helper()
	b.n++
	run, err := b.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("bench-bare-%d-%d", time.Now().UnixNano(), b.n), TaskQueue: bareQueue}, bareName)
	if err == nil {
		err = run.Get(ctx, nil)
	}
	if err != nil {
		tb.Fatalf("bare workflow: %v", err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkThroughput runs 100 000 and 1 000 000 inputs that each print one line,
// in one job each, and reports inputs per second beside the local pool's.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			in := ints(n)
			var remote, base time.Duration
			for b.Loop() {
				r, l := beside(b, ctx, printingF, printing, in, runtime.NumCPU())
				remote, base = remote+r, base+l
			}
			rate := float64(n*b.N) / remote.Seconds()
			lrate := float64(n*b.N) / base.Seconds()
			b.ReportMetric(rate, "inputs/s")
			b.ReportMetric(lrate, "local-inputs/s")
			report(b, "%d printing inputs: %.0f inputs/s (%.2f s per job); local pool %.0f inputs/s (cluster/local %.3f)",
				n, rate, (remote / time.Duration(b.N)).Seconds(), lrate, rate/lrate)
			row := rowThroughput100k
			if n == 1_000_000 {
				row = rowThroughput1M
			}
			record(row, fmt.Sprintf("%s inputs/s (%.2f s)", thousands(rate), (remote/time.Duration(b.N)).Seconds()),
				fmt.Sprintf("%s inputs/s (ratio %.3f)", thousands(lrate), rate/lrate))
		})
	}
}

// BenchmarkParallelEfficiency runs 400 inputs that each sleep 10 ms. Efficiency is
// the ideal wall time, 400 × 10 ms spread over the cluster's workers, over the job's;
// the baseline is a local pool with as many goroutines as the cluster has workers.
func BenchmarkParallelEfficiency(b *testing.B) {
	ctx := context.Background()
	const n = 400
	in := ints(n)
	ideal := time.Duration(n) * 10 * time.Millisecond / time.Duration(workers())
	var remote, base time.Duration
	for b.Loop() {
		r, l := beside(b, ctx, sleepyF, sleepy, in, workers())
		remote, base = remote+r, base+l
	}
	remote /= time.Duration(b.N)
	base /= time.Duration(b.N)
	eff, leff := float64(ideal)/float64(remote), float64(ideal)/float64(base)
	b.ReportMetric(eff, "efficiency")
	b.ReportMetric(leff, "local-efficiency")
	report(b, "400 × 10 ms on %d workers: %.0f ms, efficiency %.2f; local pool of %d: %.0f ms, efficiency %.2f (ideal %.0f ms)",
		workers(), ms(remote), eff, workers(), ms(base), leff, ms(ideal))
	record(rowEfficiency, fmt.Sprintf("%.0f ms, parallel efficiency %.2f", ms(remote), eff),
		fmt.Sprintf("%d goroutines: %.0f ms, %.2f", workers(), ms(base), leff))
}

// BenchmarkManySmallJobs starts 14 jobs of 4 inputs of 400 ms at once, as many
// users' small jobs arrive: 22.4 s of calls, 5.6 s on the cluster's 4 workers at
// best. A node serves one job at a time and resets its workers between jobs (new
// ones for the next tenant), so the jobs queue for nodes and each reset is on the
// path of the next job. The baseline is the local pool running the same 56 calls
// on as many goroutines as the cluster has workers.
func BenchmarkManySmallJobs(b *testing.B) {
	ctx := context.Background()
	const jobs, per = 14, 4
	ideal := time.Duration(jobs*per) * 400 * time.Millisecond / time.Duration(workers())
	var remote, base time.Duration
	for b.Loop() {
		waitStandby(b, *nodes)
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		for j := range jobs {
			g.Go(func() error {
				in := []int{j * per, j*per + 1, j*per + 2, j*per + 3}
				out, err := burla.RemoteParallelMap(gctx, slowF, in, opts()...)
				if err == nil && !slices.Equal(out, in) {
					err = fmt.Errorf("job %d returned %v; want %v", j, out, in)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		remote += time.Since(start)
		start = time.Now()
		local(slow, ints(jobs*per), workers())
		base += time.Since(start)
	}
	remote /= time.Duration(b.N)
	base /= time.Duration(b.N)
	b.ReportMetric(remote.Seconds(), "s")
	b.ReportMetric(remote.Seconds()/ideal.Seconds(), "x-ideal")
	report(b, "%d jobs of %d × 400 ms at once on %d workers: %.1f s, %.2f× the ideal %.1f s; local pool of %d: %.1f s",
		jobs, per, workers(), remote.Seconds(), remote.Seconds()/ideal.Seconds(), ideal.Seconds(), workers(), base.Seconds())
	record(rowManyJobs, fmt.Sprintf("%.1f s, %.2f× the ideal %.1f s", remote.Seconds(), remote.Seconds()/ideal.Seconds(), ideal.Seconds()),
		fmt.Sprintf("%d goroutines: %.1f s", workers(), base.Seconds()))
}

// BenchmarkBytes sends 1 GiB of inputs in one job, 1 024 strings of 1 MiB, and
// reports the bytes per second the cluster takes them in.
func BenchmarkBytes(b *testing.B) {
	ctx := context.Background()
	const n, each = 1024, 1 << 20
	in := make([]string, n)
	for i := range in {
		in[i] = strings.Repeat(string(rune('a'+i%26)), each)
	}
	var remote, base time.Duration
	for b.Loop() {
		waitStandby(b, *nodes)
		start := time.Now()
		out, err := burla.RemoteParallelMap(ctx, sizeF, in, opts()...)
		if err != nil {
			b.Fatal(err)
		}
		remote += time.Since(start)
		if out[n-1] != each {
			b.Fatalf("last output %d; want %d", out[n-1], each)
		}
		start = time.Now()
		local(size, in, runtime.NumCPU())
		base += time.Since(start)
	}
	rate := float64(n*each*b.N) / remote.Seconds()
	lrate := float64(n*each*b.N) / base.Seconds()
	b.ReportMetric(rate/1e6, "MB/s")
	report(b, "1 GiB of inputs (1 024 × 1 MiB): %.0f MB/s (%.1f s per job); local pool %.0f MB/s",
		rate/1e6, (remote / time.Duration(b.N)).Seconds(), lrate/1e6)
	record(rowBytes, fmt.Sprintf("%.0f MB/s (%.1f s)", rate/1e6, (remote/time.Duration(b.N)).Seconds()), "(no copy: not comparable)")
}

// BenchmarkTenMillion runs 10 000 000 trivial inputs in one call and reports the
// rate and this client's peak RSS while it ran, beside the 160 MB its inputs and
// outputs take as Go slices.
func BenchmarkTenMillion(b *testing.B) {
	ctx := context.Background()
	n := *huge
	in := ints(n)
	var remote time.Duration
	var peak int64
	for b.Loop() {
		waitStandby(b, *nodes)
		debug.FreeOSMemory() // what earlier benchmarks left must not count
		resetPeakRSS()
		start := time.Now()
		out, err := burla.RemoteParallelMap(ctx, trivialF, in, opts()...)
		if err != nil {
			b.Fatal(err)
		}
		remote += time.Since(start)
		peak = max(peak, peakRSS())
		if out[n-1] != n {
			b.Fatalf("last output %d; want %d", out[n-1], n)
		}
	}
	rate := float64(n*b.N) / remote.Seconds()
	b.ReportMetric(rate, "inputs/s")
	b.ReportMetric(float64(peak)/(1<<20), "client-peak-MiB")
	report(b, "%d trivial inputs in one call: %.0f inputs/s (%.1f s); client peak RSS %d MiB, of which inputs and outputs %d MiB",
		n, rate, (remote / time.Duration(b.N)).Seconds(), peak>>20, int64(2*8*n)>>20)
	if n == 10_000_000 {
		record(rowTenMillion, fmt.Sprintf("%s inputs/s (%.0f s); client peak RSS %d MiB, of which the inputs and outputs slices %d MiB",
			thousands(rate), (remote/time.Duration(b.N)).Seconds(), peak>>20, int64(2*8*n)>>20), "")
	}
}

// resetPeakRSS resets this process's VmHWM to its current RSS.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is this process's VmHWM in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// report logs a figure and prints it, so that `make bench` shows every figure
// whatever -v says.
func report(b testing.TB, format string, args ...any) {
	b.Helper()
	msg := fmt.Sprintf(format, args...)
	b.Log(msg)
	fmt.Fprintf(os.Stderr, "bench: %s\n", msg)
}

// BenchmarkFirstResult measures, on a warm cluster, the time from a job's start to
// its first result, median of 10.
func BenchmarkFirstResult(b *testing.B) {
	ctx := context.Background()
	in := []int{1, 2, 3, 4}
	var firsts []time.Duration
	for b.Loop() {
		for range 10 {
			waitStandby(b, *nodes)
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
	p50, p90 := percentile(firsts, 0.5), percentile(firsts, 0.9)
	b.ReportMetric(float64(p50.Microseconds())/1000, "first-result-p50-ms")
	report(b, "job start to first result over %d runs: median %.1f ms, p90 %.1f ms", len(firsts), ms(p50), ms(p90))
	record(rowFirstResult, fmt.Sprintf("median %.1f ms, p90 %.1f ms", ms(p50), ms(p90)), "")
}

// BenchmarkClusterUp measures the time from starting a cluster's ClusterWorkflow
// (what `burla cluster up` does) to all its standby nodes ready, median of 10, on a
// second cluster beside the dev cluster's.
func BenchmarkClusterUp(b *testing.B) {
	ctx := context.Background()
	cc := control.NewClient(dev.Cluster.Temporal())
	var ups []time.Duration
	for b.Loop() {
		for i := range 10 {
			name := fmt.Sprintf("bench%d", i)
			start := time.Now()
			if err := cc.Up(ctx, name, control.StandbySpec{Nodes: 2, CPUs: 1, Provider: "local"}); err != nil {
				b.Fatal(err)
			}
			waitReady(b, name, 2)
			ups = append(ups, time.Since(start))
			if _, err := cc.Shutdown(ctx, name); err != nil {
				b.Fatal(err)
			}
		}
	}
	p50, p90 := percentile(ups, 0.5), percentile(ups, 0.9)
	b.ReportMetric(float64(p50.Microseconds())/1000, "up-p50-ms")
	report(b, "cluster up to 2 standby nodes ready over %d runs: median %.0f ms, p90 %.0f ms", len(ups), ms(p50), ms(p90))
	record(rowClusterUp, fmt.Sprintf("median %.0f ms, p90 %.0f ms", ms(p50), ms(p90)), "")
}

// waitStandby waits for the dev cluster's standby, then lets it settle: a node turns
// ready as its reset ends, and a user starting the next job by hand finds it settled.
func waitStandby(b testing.TB, n int) {
	waitReady(b, control.DefaultCluster, n)
	time.Sleep(*settle)
}

var (
	nodes = flag.Int("nodes", 2, "nodes in the dev cluster")
	cpus  = flag.Int("cpus", 2, "CPUs (workers) per node")
	runs  = flag.Int("runs", 50, "runs of the 3-input job")
	huge  = flag.Int("huge", 10_000_000, "inputs in BenchmarkTenMillion's one call")
)

// settle is how long a cluster has been ready when a measured job starts.
var settle = flag.Duration("settle", time.Second, "how long standby is ready before each measured job")

// waitReady waits until cluster has n ready nodes.
func waitReady(b testing.TB, cluster string, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, err := control.NewClient(dev.Cluster.Temporal()).Status(context.Background(), cluster); err == nil && st.Ready() >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("cluster %s: %d nodes not ready within a minute", cluster, n)
}

// out is where `make bench` has the figures written, for the README's table
// (tests/bench/readme makes it from them).
var out = flag.String("out", "", "write the figures to this JSON file (Results)")

var (
	resultsMu sync.Mutex
	results   = map[string]Row{}
)

// record keeps a figure for the results file.
func record(row, burla, local string) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[row] = Row{Burla: burla, Local: local}
}

func writeResults(path string) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	r := Results{When: time.Now().UTC().Truncate(time.Second), CPUs: runtime.NumCPU(), Nodes: *nodes, NodeCPU: *cpus, Figures: results}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// thousands writes x rounded, with a space between each group of three digits.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", math.Round(x))
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return s
}
