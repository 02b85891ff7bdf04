package temporalmetrics

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// checkText gathers g and compares the text exposition of the named families,
// or of all of them if none is named, with want. (client_golang's testutil
// would do, but it needs a module that go.mod does not list.)
func checkText(t *testing.T, g prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var got bytes.Buffer
	for _, mf := range mfs {
		if len(names) == 0 || slices.Contains(names, mf.GetName()) {
			if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
				t.Fatalf("encode %s: %v", mf.GetName(), err)
			}
		}
	}
	if got, want := got.String(), strings.TrimPrefix(want, "\n"); got != want {
		t.Errorf("gathered:\n%s\nwant:\n%s", got, want)
	}
}

// seriesCount gathers g and returns the number of series in the family name.
func seriesCount(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestCounterWithTags(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	h.WithTags(map[string]string{"operation": "StartWorkflowExecution", "namespace": "default"}).Counter("temporal_request").Inc(2)
	h.WithTags(map[string]string{"operation": "StartWorkflowExecution", "namespace": "default"}).Counter("temporal_request").Inc(1)
	h.WithTags(map[string]string{"operation": "PollActivityTaskQueue", "namespace": "default"}).Counter("temporal_request").Inc(1)

	want := `
# HELP temporal_request_total Counter reported by the Temporal Go SDK.
# TYPE temporal_request_total counter
temporal_request_total{namespace="default",operation="PollActivityTaskQueue"} 1
temporal_request_total{namespace="default",operation="StartWorkflowExecution"} 3
`
	checkText(t, reg, want, "temporal_request_total")
}

// The SDK uses one name with several tag key sets; all of them must be
// exposed, in one family, without the registry refusing any.
func TestSameNameDifferentTagSets(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	h.Counter("temporal_request_failure").Inc(1)
	h.WithTags(map[string]string{"operation": "Poll"}).Counter("temporal_request_failure").Inc(2)
	h.WithTags(map[string]string{"operation": "Poll"}).WithTags(map[string]string{"status_code": "UNAVAILABLE"}).Counter("temporal_request_failure").Inc(3)
	h.WithTags(map[string]string{"namespace": "default"}).Gauge("temporal_worker_task_slots_available").Update(5)
	h.WithTags(map[string]string{"namespace": "default", "worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_available").Update(7)

	want := `
# HELP temporal_request_failure_total Counter reported by the Temporal Go SDK.
# TYPE temporal_request_failure_total counter
temporal_request_failure_total 1
temporal_request_failure_total{operation="Poll"} 2
temporal_request_failure_total{operation="Poll",status_code="UNAVAILABLE"} 3
# HELP temporal_worker_task_slots_available Gauge reported by the Temporal Go SDK.
# TYPE temporal_worker_task_slots_available gauge
temporal_worker_task_slots_available{namespace="default"} 5
temporal_worker_task_slots_available{namespace="default",worker_type="ActivityWorker"} 7
`
	checkText(t, reg, want)
}

func TestWithTagsOverrides(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	base := h.WithTags(map[string]string{"namespace": "default", "task_queue": "burla"})
	base.WithTags(map[string]string{"task_queue": "burla-node-1", "worker_type": "ActivityWorker"}).Counter("temporal_worker_start").Inc(1)
	base.Counter("temporal_worker_start").Inc(1)

	want := `
# HELP temporal_worker_start_total Counter reported by the Temporal Go SDK.
# TYPE temporal_worker_start_total counter
temporal_worker_start_total{namespace="default",task_queue="burla"} 1
temporal_worker_start_total{namespace="default",task_queue="burla-node-1",worker_type="ActivityWorker"} 1
`
	checkText(t, reg, want)
}

func TestTimerIsHistogramInSeconds(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg).WithTags(map[string]string{"activity_type": "run-chunk"})
	h.Timer("temporal_activity_execution_latency").Record(3 * time.Millisecond)
	h.Timer("temporal_activity_execution_latency").Record(2 * time.Second)
	h.Timer("temporal_activity_execution_latency").Record(90 * time.Second)

	want := `
# HELP temporal_activity_execution_latency_seconds Timer reported by the Temporal Go SDK, in seconds.
# TYPE temporal_activity_execution_latency_seconds histogram
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.001"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.0025"} 0
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.005"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.01"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.025"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.05"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.1"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.25"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="0.5"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="1"} 1
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="2.5"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="5"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="10"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="30"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="60"} 2
temporal_activity_execution_latency_seconds_bucket{activity_type="run-chunk",le="+Inf"} 3
temporal_activity_execution_latency_seconds_sum{activity_type="run-chunk"} 92.003
temporal_activity_execution_latency_seconds_count{activity_type="run-chunk"} 3
`
	checkText(t, reg, want)
}

func TestFamilyName(t *testing.T) {
	tests := []struct {
		kind kind
		name string
		want string
	}{
		{counterKind, "temporal_request", "temporal_request_total"},
		{counterKind, "temporal_request_failure", "temporal_request_failure_total"},
		{counterKind, "already_total", "already_total"},
		{timerKind, "temporal_workflow_task_execution_latency", "temporal_workflow_task_execution_latency_seconds"},
		{timerKind, "temporal_activity_execution_latency", "temporal_activity_execution_latency_seconds"},
		{timerKind, "already_seconds", "already_seconds"},
		{gaugeKind, "temporal_worker_task_slots_available", "temporal_worker_task_slots_available"},
		{gaugeKind, "looks_like_a_counter_total", "looks_like_a_counter_total_gauge"},
		{gaugeKind, "x_seconds_count", "x_seconds_count_gauge"},
		{gaugeKind, "my-metric.rate:5m", "my_metric_rate_5m"},
		{gaugeKind, "9lives", "_9lives"},
		{gaugeKind, "", "_"},
		{gaugeKind, "héllo", "h_llo"},
	}
	for _, tt := range tests {
		if got := familyName(tt.kind, tt.name); got != tt.want {
			t.Errorf("familyName(%d, %q) = %q; want %q", tt.kind, tt.name, got, tt.want)
		}
	}
}

// Whatever names and tags the SDK passes, and however the kinds collide, the
// registry must gather without error: one bad series fails the whole scrape.
func TestAwkwardNamesAndTagsGather(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	awkward := h.WithTags(map[string]string{
		"a-b": "1", "a_b": "2", // collide once sanitized
		"__name__": "x", "le": "0.5", "0day": "y", "": "empty key",
		"bad_utf8": "\xff\xfe", "empty": "",
	})
	awkward.Counter("c").Inc(1)
	awkward.Gauge("c").Update(1)
	awkward.Timer("c").Record(time.Second)
	awkward.Gauge("c_total").Update(1)
	awkward.Gauge("c_seconds").Update(1)
	awkward.Gauge("c_seconds_count").Update(1)
	awkward.Counter("c_seconds_count").Inc(1)
	awkward.Counter("negative").Inc(-1)
	h.Counter("c").Inc(1)
	h.WithTags(map[string]string{"a.b": "3"}).Counter("c").Inc(1) // same labels as "a_b"
	h.WithTags(map[string]string{"a_b": "3"}).Counter("c").Inc(1)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetType().String()
	}
	want := map[string]string{
		"c_total":               "COUNTER",
		"c":                     "GAUGE",
		"c_seconds":             "HISTOGRAM",
		"c_total_gauge":         "GAUGE",
		"c_seconds_gauge":       "GAUGE",
		"c_seconds_count_gauge": "GAUGE",
		"c_seconds_count_total": "COUNTER",
		"negative_total":        "COUNTER",
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("family %s has type %q; want %q", name, got[name], typ)
		}
	}
	if n := seriesCount(t, reg, "c_total"); n != 3 {
		t.Errorf("c_total has %d series; want 3 (awkward tags, none, a_b=3)", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	ops := []string{"Poll", "Respond", "Start"}
	const goroutines, perGoroutine = 8, 500

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				hh := h.WithTags(map[string]string{"operation": ops[(g+i)%len(ops)]})
				hh.Counter("temporal_request").Inc(1)
				hh.Timer("temporal_request_latency").Record(time.Millisecond)
				hh.Gauge("temporal_num_pollers").Update(float64(i))
			}
		})
	}
	wg.Go(func() { // scrapes while the SDK records
		for range 20 {
			if _, err := reg.Gather(); err != nil {
				t.Errorf("Gather: %v", err)
			}
		}
	})
	wg.Wait()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "temporal_request_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if total != goroutines*perGoroutine {
		t.Errorf("temporal_request_total sums to %v; want %v", total, goroutines*perGoroutine)
	}
}

// The SDK calls WithTags(…).Counter(…).Inc(1) around every request; once the
// tags have been seen that must not allocate.
func TestHotPathDoesNotAllocate(t *testing.T) {
	h := New(prometheus.NewRegistry())
	tags := map[string]string{"operation": "PollActivityTaskQueue", "namespace": "default"}
	record := func() {
		hh := h.WithTags(tags)
		hh.Counter("temporal_request").Inc(1)
		hh.Timer("temporal_request_latency").Record(time.Millisecond)
		hh.Gauge("temporal_num_pollers").Update(2)
	}
	record()
	if allocs := testing.AllocsPerRun(100, record); allocs != 0 {
		t.Errorf("recording with seen tags allocates %v times; want 0", allocs)
	}
}

type greetInput struct{ Name string }

type greetOutput struct{ Greeting string }

// greetWorkflow runs greet as a local activity: the SDK's test environment
// reports local activities' metrics (a worker also reports the latency of
// normal activities, from its poller, which the test environment has not).
func greetWorkflow(ctx workflow.Context, in greetInput) (greetOutput, error) {
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: time.Minute})
	var out greetOutput
	err := workflow.ExecuteLocalActivity(ctx, "greet", in).Get(ctx, &out)
	return out, err
}

func greetActivity(_ context.Context, in greetInput) (greetOutput, error) {
	return greetOutput{Greeting: "hello " + in.Name}, nil
}

// The SDK's test environment reports through the handler as a worker would.
func TestWorkflowTestSuiteReportsThroughHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	var suite testsuite.WorkflowTestSuite
	suite.SetMetricsHandler(New(reg))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(greetWorkflow, workflow.RegisterOptions{Name: "greet-workflow"})
	env.RegisterActivityWithOptions(greetActivity, activity.RegisterOptions{Name: "greet"})

	env.ExecuteWorkflow("greet-workflow", greetInput{Name: "burla"})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	var out greetOutput
	if err := env.GetWorkflowResult(&out); err != nil || out.Greeting != "hello burla" {
		t.Fatalf("workflow returned %+v, %v; want greeting %q", out, err, "hello burla")
	}

	for _, want := range []string{"temporal_local_activity_total", "temporal_local_activity_execution_latency_seconds"} {
		if n := seriesCount(t, reg, want); n == 0 {
			t.Errorf("%s has no series; want at least one", want)
		}
	}
}
