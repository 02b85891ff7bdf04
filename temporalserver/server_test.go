package temporalserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

const (
	jobStateName = "BurlaJobState"
	extraSAName  = "BurlaTestExtra"
	taskQueue    = "temporalserver-test"
)

var jobState = temporal.NewSearchAttributeKeyKeyword(jobStateName)

func greetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	if err := workflow.ExecuteActivity(ctx, greetActivity, name).Get(ctx, &out); err != nil {
		return "", err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, jobState.ValueSet("done")); err != nil {
		return "", err
	}
	return out, nil
}

func greetActivity(_ context.Context, name string) (string, error) {
	return "hello " + name, nil
}

func testLogger() *slog.Logger {
	// Server warnings go to stderr so they show up in `go test -v`.
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func dial(t *testing.T, s *Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.FrontendHostPort(),
		Namespace: s.Namespace(),
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.FrontendHostPort(), err)
	}
	return c
}

func customSearchAttributes(t *testing.T, c client.Client, ns string) map[string]enumspb.IndexedValueType {
	t.Helper()
	resp, err := c.OperatorService().ListSearchAttributes(context.Background(), &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		t.Fatalf("ListSearchAttributes: %v", err)
	}
	return resp.GetCustomAttributes()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return string(body)
}

func TestServerPersistsAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := Config{
		DataDir:          dir,
		Logger:           testLogger(),
		SearchAttributes: map[string]enumspb.IndexedValueType{jobStateName: enumspb.INDEXED_VALUE_TYPE_KEYWORD},
	}

	// First run: fresh database.
	t0 := time.Now()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first start (new database): %v; frontend %s, ui %s", time.Since(t0).Round(time.Millisecond), s.FrontendHostPort(), s.UIAddress())
	defer func() { _ = s.Stop() }()

	if s.Namespace() != "default" {
		t.Errorf("Namespace() = %q, want default", s.Namespace())
	}
	if _, err := os.Stat(filepath.Join(dir, dbFileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
	if !strings.HasPrefix(s.UIAddress(), "http://127.0.0.1:") {
		t.Fatalf("UIAddress() = %q", s.UIAddress())
	}
	if body := httpGet(t, s.UIAddress()+"/"); !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("UI index is not HTML: %.200s", body)
	}
	// The UI's API proxy reaches our frontend.
	if body := httpGet(t, s.UIAddress()+"/api/v1/namespaces/"+s.Namespace()); !strings.Contains(body, s.Namespace()) {
		t.Errorf("UI namespace API: %.200s", body)
	}

	c := dial(t, s)
	if got := customSearchAttributes(t, c, s.Namespace())[jobStateName]; got != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
		t.Errorf("search attribute %s = %v, want KEYWORD", jobStateName, got)
	}

	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greetWorkflow)
	w.RegisterActivity(greetActivity)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "greet-1",
		TaskQueue:             taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(jobState.ValueSet("running")),
	}, greetWorkflow, "burla")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("workflow round trip: %v", time.Since(t1).Round(time.Millisecond))
	if out != "hello burla" {
		t.Errorf("workflow result %q", out)
	}
	// The upserted search attribute is queryable (visibility is updated
	// asynchronously).
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: jobStateName + " = 'done'",
		})
		if err != nil {
			t.Fatalf("ListWorkflow: %v", err)
		}
		if len(resp.GetExecutions()) == 1 && resp.GetExecutions()[0].GetExecution().GetRunId() == run.GetRunID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow not found by %s = 'done': %v", jobStateName, resp.GetExecutions())
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.Stop()
	c.Close()
	t2 := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stop: %v", time.Since(t2).Round(time.Millisecond))
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// Second run on the same data directory, same configuration.
	t3 := time.Now()
	s2, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second start (existing database): %v; frontend %s", time.Since(t3).Round(time.Millisecond), s2.FrontendHostPort())
	defer func() { _ = s2.Stop() }()
	httpGet(t, s2.UIAddress()+"/")
	c2 := dial(t, s2)
	checkHistory(ctx, t, c2, "greet-1", run.GetRunID())
	if got := customSearchAttributes(t, c2, s2.Namespace()); len(got) != 1 || got[jobStateName] != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
		t.Errorf("search attributes after restart: %v", got)
	}
	c2.Close()
	if err := s2.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Third run, with one more search attribute (registered through the
	// operator API this time since the namespace exists).
	cfg.SearchAttributes = map[string]enumspb.IndexedValueType{
		jobStateName: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		extraSAName:  enumspb.INDEXED_VALUE_TYPE_INT,
	}
	t4 := time.Now()
	s3, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("third start (existing database, one new search attribute): %v", time.Since(t4).Round(time.Millisecond))
	defer func() { _ = s3.Stop() }()
	c3 := dial(t, s3)
	defer c3.Close()
	checkHistory(ctx, t, c3, "greet-1", run.GetRunID())
	sas := customSearchAttributes(t, c3, s3.Namespace())
	if sas[jobStateName] != enumspb.INDEXED_VALUE_TYPE_KEYWORD || sas[extraSAName] != enumspb.INDEXED_VALUE_TYPE_INT {
		t.Errorf("search attributes after adding one: %v", sas)
	}
	// The newly added attribute is usable right away.
	if _, err := c3.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: extraSAName + " > 0"}); err != nil {
		t.Errorf("query on new search attribute: %v", err)
	}
	if err := s3.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// checkHistory checks that the completed workflow and its full history are
// there.
func checkHistory(ctx context.Context, t *testing.T, c client.Client, id, runID string) {
	t.Helper()
	desc, err := c.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		t.Fatalf("DescribeWorkflowExecution after restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("status after restart = %v", st)
	}
	iter := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []enumspb.EventType
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("history after restart: %v", err)
		}
		events = append(events, ev.GetEventType())
	}
	if len(events) < 5 || events[0] != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED ||
		events[len(events)-1] != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
		t.Errorf("history after restart: %v", events)
	}
	t.Logf("history after restart: %d events", len(events))
}

func TestInMemoryWithoutUI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	s, err := Start(ctx, Config{UIPort: -1, Namespace: "scratch", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in-memory start: %v", time.Since(t0).Round(time.Millisecond))
	defer func() { _ = s.Stop() }()
	if s.UIAddress() != "" {
		t.Errorf("UIAddress() = %q, want empty", s.UIAddress())
	}
	c := dial(t, s)
	defer c.Close()
	if _, err := c.DescribeWorkflowExecution(ctx, "missing", ""); err == nil {
		t.Error("DescribeWorkflowExecution of a missing workflow succeeded")
	}
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "scratch"}); err != nil {
		t.Errorf("DescribeNamespace: %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	for _, cfg := range []Config{{Port: busy, UIPort: -1}, {UIPort: busy}} {
		s, err := Start(context.Background(), cfg)
		if err == nil {
			_ = s.Stop()
			t.Fatalf("Start(%+v) on a busy port succeeded", cfg)
		}
		if !strings.Contains(err.Error(), "not available") {
			t.Errorf("Start(%+v): unexpected error %v", cfg, err)
		}
	}
}

// TestPersistsAcrossProcesses checks persistence the way `burla dev` sees it:
// a process runs a workflow and is killed without stopping the server, and a
// new process finds the workflow.
func TestPersistsAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes")
	}
	dir := t.TempDir()
	run := func(phase string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "TEMPORALSERVER_HELPER="+phase, "TEMPORALSERVER_DIR="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t0 := time.Now()
	out, err := run("write")
	if !strings.Contains(out, "WORKFLOW COMPLETED") {
		t.Fatalf("write phase: %v\n%s", err, out)
	}
	t.Logf("write phase (process killed after the workflow completed): %v", time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()
	if out, err := run("check"); err != nil || !strings.Contains(out, "HISTORY OK") {
		t.Fatalf("check phase: %v\n%s", err, out)
	}
	t.Logf("check phase (new process, same DataDir): %v", time.Since(t1).Round(time.Millisecond))
}

// TestHelperProcess is the child process of TestPersistsAcrossProcesses.
func TestHelperProcess(t *testing.T) {
	phase := os.Getenv("TEMPORALSERVER_HELPER")
	if phase == "" {
		t.Skip("helper process for TestPersistsAcrossProcesses")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{
		DataDir:          os.Getenv("TEMPORALSERVER_DIR"),
		UIPort:           -1,
		Logger:           testLogger(),
		SearchAttributes: map[string]enumspb.IndexedValueType{jobStateName: enumspb.INDEXED_VALUE_TYPE_KEYWORD},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	switch phase {
	case "write":
		w := worker.New(c, taskQueue, worker.Options{})
		w.RegisterWorkflow(greetWorkflow)
		w.RegisterActivity(greetActivity)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-killed", TaskQueue: taskQueue}, greetWorkflow, "again")
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
		fmt.Println("WORKFLOW COMPLETED")
		// Die like a killed `burla dev`: no Stop, no clean shutdown.
		p, _ := os.FindProcess(os.Getpid())
		_ = p.Kill()
		select {}
	case "check":
		checkHistory(ctx, t, c, "greet-killed", "")
		if !t.Failed() {
			fmt.Println("HISTORY OK")
		}
		c.Close()
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
