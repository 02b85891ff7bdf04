package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// hog holds mb MB of memory for a while, as a call that needs it would, and
// returns mb.
var hog = burla.Func("hog", func(ctx context.Context, mb int) (int, error) {
	fmt.Printf("hog %d\n", mb)
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	time.Sleep(500 * time.Millisecond)
	return int(b[len(b)-4096]) * mb, nil
})

// TestDynamicResources runs calls that need more memory than a node's share per
// CPU on a node of 2 CPUs and 800 MB. By default (dynamic resources) the node
// starts with two workers of 400 MB; the 600 MB call runs out of memory, goes back
// to the queue, and runs again once the node has halved its workers, and every
// input succeeds. A call that needs more than the whole node fails with kind oom,
// naming what to do. A fixed FuncCPU keeps the old behaviour: the process runtime
// does not limit a call's memory.
func TestDynamicResources(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	d, err := clustertest.Start(ctx, clustertest.Options{Nodes: 1, CPUs: 2, RAMMB: 800})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Keep = t.Failed()
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	}()
	on := func(extra ...burla.Option) []burla.Option {
		return append([]burla.Option{burla.OnCluster(d.Cluster), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {})}, extra...)
	}
	var lines chanLines
	inputs := []int{50, 600, 50, 50, 50}
	start := time.Now()
	outs, err := burla.RemoteParallelMap(ctx, hog, inputs, on(burla.OnLog(lines.add))...)
	if err != nil {
		t.Fatalf("dynamic job: %v", err)
	}
	if !slices.Equal(outs, inputs) {
		t.Fatalf("outputs %v; want %v", outs, inputs)
	}
	if n := lines.count("hog 600"); n < 2 {
		t.Errorf("the 600 MB call ran %d times; want it run again after running out of memory", n)
	}
	t.Logf("dynamic job with one call out of memory took %v", time.Since(start).Round(time.Millisecond))

	_, err = burla.RemoteParallelMap(ctx, hog, []int{50, 1200}, on()...)
	var re *burla.RemoteError
	if !errors.As(err, &re) || re.Index != 1 || re.Kind != "oom" || !strings.Contains(re.Message, "alone on its node") {
		t.Fatalf("a call needing more than the node: %v; want a RemoteError of kind oom for input 1 saying it ran alone", err)
	}

	outs, err = burla.RemoteParallelMap(ctx, hog, []int{600, 600}, on(burla.FuncCPU(1))...)
	if err != nil || !slices.Equal(outs, []int{600, 600}) {
		t.Fatalf("fixed FuncCPU job: %v, %v; want both calls to run unlimited as before", outs, err)
	}
}

// chanLines collects log lines from OnLog, which calls it from one goroutine.
type chanLines struct{ lines []string }

func (c *chanLines) add(l burla.LogLine) { c.lines = append(c.lines, l.Text) }
func (c *chanLines) count(text string) int {
	n := 0
	for _, l := range c.lines {
		if l == text {
			n++
		}
	}
	return n
}
