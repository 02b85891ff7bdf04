// Package faults proves that nothing is lost: it runs 20 000-input jobs on a real
// cluster whose parts are separate processes (clustertest.StartSplit), injects one
// fault into each (kill -9 a container worker, a node agent or the control plane;
// restart the Temporal or NATS server; kill the client; cancel from the CLI), and
// checks that every result arrives exactly once and that the job ends as it should.
// It runs 8 clients at once and reports each component's peak memory. At the end it
// prints a table: fault, outcome, time to recover.
//
// The test binary is also the user program the cluster runs (burla.Main in
// TestMain), and the client processes the tests start and kill.
package faults

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

var cluster *clustertest.Split

func TestMain(m *testing.M) {
	burla.Main()
	if role := os.Getenv(clientRole); role != "" {
		os.Exit(runClient(role))
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "burla-split-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	o := clustertest.Options{Nodes: 2, CPUs: 2, Dir: dir}
	if partition, partitionErr = setUpNetns(dir); partitionErr == nil {
		o.Host, o.NodeWrapper = partition.HostAddr, partition.wrapper
	}
	cluster, err = clustertest.StartSplit(ctx, o)
	if err != nil {
		if partition != nil {
			partition.Remove()
		}
		fmt.Fprintln(os.Stderr, "faults: start cluster:", err)
		os.Exit(1)
	}
	code := m.Run()
	printTable()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: stop cluster:", err)
		code = 1
	}
	if partition != nil {
		partition.Remove()
	}
	if code == 0 && os.Getenv("BURLA_KEEP_CLUSTER") == "" {
		os.RemoveAll(cluster.Dir)
	} else {
		fmt.Fprintf(os.Stderr, "faults: cluster state and logs kept in %s\n", cluster.Dir)
	}
	os.Exit(code)
}

// The functions the cluster runs.
var (
	// work takes about a millisecond, so that 20 000 inputs on 4 workers last
	// several seconds: long enough for a fault to land in the middle.
	work = burla.Func("work", func(ctx context.Context, x int) (int, error) {
		time.Sleep(time.Millisecond)
		return 2*x + 1, nil
	})
	square = burla.Func("square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
)

func opts(extra ...burla.Option) []burla.Option {
	return append([]burla.Option{burla.OnCluster(cluster.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}, extra...)
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkHealthy runs a small good job, as every test does after its fault.
func checkHealthy(t *testing.T) {
	t.Helper()
	out, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), square, []int{1, 2, 3, 4, 5}, opts()...)
	if err != nil || fmt.Sprint(out) != "[1 4 9 16 25]" {
		t.Fatalf("a good job after the fault: %v, %v; want [1 4 9 16 25]", out, err)
	}
}

// row is one line of the table the suite prints.
type row struct {
	fault, outcome string
	stall          time.Duration // the longest wait for a result after the fault; -1: not applicable
	recover        time.Duration // until the cluster was whole again; -1: not applicable
	job            string        // the job's duration, against the baseline
}

var (
	tableMu sync.Mutex
	table   []row
	memory  []string // each component's peak RSS during the 8-client run
)

func record(r row) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, r)
}

func printTable() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\toutcome\ttime to recover\tlongest wait for a result\tjob time")
	dur := func(d time.Duration) string {
		if d < 0 {
			return "-"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	for _, r := range table {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.fault, r.outcome, dur(r.recover), dur(r.stall), r.job)
	}
	w.Flush()
	if len(memory) > 0 {
		fmt.Fprintf(&b, "\npeak RSS during the %d-client run: %s\n", loadClients, strings.Join(memory, ", "))
	}
	fmt.Print("\n", b.String())
	if path := os.Getenv("BURLA_FAULTS_TABLE"); path != "" {
		os.WriteFile(path, []byte(b.String()), 0o644)
	}
}
