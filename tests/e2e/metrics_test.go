package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store/natsstore"
)

// metric reads one unlabelled (or first labelled) sample of name from a Prometheus endpoint.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no %s:\n%s", url, name, b)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetrics(t *testing.T) {
	before := metric(t, dev.Addrs.Metrics, "burla_control_jobs_placed_total")
	if _, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1, 2}, opts()...); err != nil {
		t.Fatal(err)
	}
	if after := metric(t, dev.Addrs.Metrics, "burla_control_jobs_placed_total"); after != before+1 {
		t.Errorf("burla_control_jobs_placed_total went from %v to %v over one job; want +1", before, after)
	}
	st, err := natsstore.Connect(context.Background(), dev.Addrs.NATS, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Nodes are reset after a job: wait until standby is ready, then every worker
	// of every node is warm.
	waitStandby(t, 2)
	nodes, err := st.ListNodes(context.Background())
	if err != nil || len(nodes) == 0 {
		t.Fatalf("nodes %v, %v", nodes, err)
	}
	for _, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			warm := metric(t, n.Metrics, "burla_node_workers_warm")
			if warm == float64(n.CPUs) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("node %s: %v warm workers; want %d", n.ID, warm, n.CPUs)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
