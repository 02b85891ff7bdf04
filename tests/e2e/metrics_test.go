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
	v, ok := sample(t, url, name+`(?:\{[^}]*\})?`)
	if !ok {
		t.Fatalf("%s has no %s", url, name)
	}
	return v
}

// sample reads the first sample whose name and labels match the pattern.
func sample(t *testing.T, url, pattern string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + pattern + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, true
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

// TestMetricsOfEveryComponent checks that a job shows in the control plane's
// metrics (jobs by final state, cluster nodes by state, queue depth, the Temporal
// SDK's own) and in its nodes' (the container workers' inputs, claims and chunks).
func TestMetricsOfEveryComponent(t *testing.T) {
	waitStandby(t, 2)
	control := dev.Addrs.Metrics
	succeeded := `burla_control_jobs_finished_total{state="Succeeded"}`
	before := metricOr0(t, control, succeeded)
	st, err := natsstore.Connect(context.Background(), dev.Addrs.NATS, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nodes, err := st.ListNodes(context.Background())
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %v, %v; want 2", nodes, err)
	}
	done := 0.0
	for _, n := range nodes {
		done += metricOr0(t, n.Metrics, `burla_worker_inputs_total{outcome="done"}`)
	}
	if _, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1, 2, 3, 4, 5, 6, 7, 8}, opts()...); err != nil {
		t.Fatal(err)
	}
	eventuallyMetric(t, control, succeeded, func(v float64) bool { return v == before+1 })
	eventuallyMetric(t, control, `burla_cluster_nodes{cluster="default",state="ready"}`, func(v float64) bool { return v == 2 })
	for _, name := range []string{`burla_queue_chunks{cluster="default",state="waiting"}`, `burla_cluster_jobs_running{cluster="default"}`} {
		if _, ok := sample(t, control, regexp.QuoteMeta(name)); !ok {
			t.Errorf("%s has no %s", control, name)
		}
	}
	if v := metric(t, control, "temporal_request_total"); v <= 0 {
		t.Errorf("temporal_request_total = %v; want the Temporal SDK's requests counted", v)
	}
	// Workers report once a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, claims := 0.0, 0.0
		for _, n := range nodes {
			after += metricOr0(t, n.Metrics, `burla_worker_inputs_total{outcome="done"}`)
			claims += metricOr0(t, n.Metrics, "burla_worker_claim_seconds_count")
		}
		if after == done+8 && claims > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes' workers report %v inputs done (%v before a job of 8) and %v claims", after, done, claims)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range nodes {
		for _, name := range []string{"burla_node_workers_busy", "temporal_worker_task_slots_available"} {
			metric(t, n.Metrics, name)
		}
	}
}

// metricOr0 reads one exactly named sample (name with its labels as printed), or 0
// if the endpoint does not have it yet.
func metricOr0(t *testing.T, url, name string) float64 {
	t.Helper()
	v, _ := sample(t, url, regexp.QuoteMeta(name))
	return v
}

func eventuallyMetric(t *testing.T, url, sample string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := metricOr0(t, url, sample)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s is %v", sample, url, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
