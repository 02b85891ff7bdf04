package temporalserver

import (
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

func TestTenantMay(t *testing.T) {
	mine, theirs := job.NewID(time.Now(), "acme"), job.NewID(time.Now(), "other")
	deflt := job.NewID(time.Now(), "")
	ex := func(id string) *commonpb.WorkflowExecution { return &commonpb.WorkflowExecution{WorkflowId: id} }
	start := func(typ, id string) *workflowservice.StartWorkflowExecutionRequest {
		return &workflowservice.StartWorkflowExecutionRequest{WorkflowId: id, WorkflowType: &commonpb.WorkflowType{Name: typ},
			TaskQueue: &taskqueuepb.TaskQueue{Name: control.TaskQueueControl}}
	}
	with := func(r *workflowservice.StartWorkflowExecutionRequest, f func(*workflowservice.StartWorkflowExecutionRequest)) *workflowservice.StartWorkflowExecutionRequest {
		f(r)
		return r
	}
	digest := strings.Repeat("a", 64)
	for _, c := range []struct {
		name string
		req  any
		ok   bool
	}{
		{"start own job", start(control.WorkflowJob, mine), true},
		{"start job under another tenant's ID", start(control.WorkflowJob, theirs), false},
		{"start job under a default ID", start(control.WorkflowJob, deflt), false},
		{"start own env build", start(control.WorkflowEnvBuild, control.EnvBuildWorkflowID("acme", strings.Repeat("a", 64))), true},
		{"start another's env build", start(control.WorkflowEnvBuild, control.EnvBuildWorkflowID("other", strings.Repeat("a", 64))), false},
		{"start the default tenant's env build", start(control.WorkflowEnvBuild, control.EnvBuildWorkflowID("", strings.Repeat("a", 64))), false},
		{"start a cluster", start(control.WorkflowCluster, control.ClusterWorkflowID("x")), false},
		{"start own job on a node's task queue", with(start(control.WorkflowJob, mine), func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.TaskQueue.Name = control.NodeTaskQueue("n1")
		}), false},
		{"start own job with eager execution", with(start(control.WorkflowJob, mine), func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.RequestEagerExecution = true
		}), false},
		{"start own job on a cron schedule", with(start(control.WorkflowJob, mine), func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.CronSchedule = "* * * * *"
		}), false},
		{"start own job with a completion callback", with(start(control.WorkflowJob, mine), func(r *workflowservice.StartWorkflowExecutionRequest) {
			r.CompletionCallbacks = []*commonpb.Callback{{}}
		}), false},
		{"start own image env build", start(control.WorkflowEnvBuild, control.EnvBuildWorkflowID("acme", control.EnvDigest(digest, "img"))), true},
		{"start an env build with a bad digest", start(control.WorkflowEnvBuild, control.EnvBuildWorkflowID("acme", "../x")), false},
		{"describe own", &workflowservice.DescribeWorkflowExecutionRequest{Execution: ex(mine)}, true},
		{"describe another's", &workflowservice.DescribeWorkflowExecutionRequest{Execution: ex(theirs)}, false},
		{"describe the cluster", &workflowservice.DescribeWorkflowExecutionRequest{Execution: ex(control.ClusterWorkflowID("default"))}, false},
		{"history of own env build", &workflowservice.GetWorkflowExecutionHistoryRequest{Execution: ex(control.EnvBuildWorkflowID("acme", digest))}, true},
		{"history of another's env build", &workflowservice.GetWorkflowExecutionHistoryRequest{Execution: ex(control.EnvBuildWorkflowID("other", digest))}, false},
		{"history of another's", &workflowservice.GetWorkflowExecutionHistoryRequest{Execution: ex(theirs)}, false},
		{"cancel own", &workflowservice.RequestCancelWorkflowExecutionRequest{WorkflowExecution: ex(mine)}, true},
		{"cancel another's", &workflowservice.RequestCancelWorkflowExecutionRequest{WorkflowExecution: ex(theirs)}, false},
		{"terminate another's", &workflowservice.TerminateWorkflowExecutionRequest{WorkflowExecution: ex(theirs)}, false},
		{"signal another's", &workflowservice.SignalWorkflowExecutionRequest{WorkflowExecution: ex(theirs)}, false},
		{"signal own", &workflowservice.SignalWorkflowExecutionRequest{WorkflowExecution: ex(mine), SignalName: control.SignalNodesAdded}, false},
		{"signal-with-start own", &workflowservice.SignalWithStartWorkflowExecutionRequest{WorkflowId: mine, SignalName: control.SignalNodesAdded}, false},
		{"query the cluster", &workflowservice.QueryWorkflowRequest{Execution: ex(control.ClusterWorkflowID("default"))}, false},
		{"update the cluster", &workflowservice.UpdateWorkflowExecutionRequest{WorkflowExecution: ex(control.ClusterWorkflowID("default"))}, false},
		{"poll a node's task queue", &workflowservice.PollActivityTaskQueueRequest{}, false},
		{"complete an activity", &workflowservice.RespondActivityTaskCompletedRequest{}, false},
		{"system info", &workflowservice.GetSystemInfoRequest{}, true},
	} {
		err := tenantMay("acme", "Method", c.req)
		if (err == nil) != c.ok {
			t.Errorf("%s: allowed %v, want %v (%v)", c.name, err == nil, c.ok, err)
		}
	}

	// A started job is stamped with its tenant, whatever the caller sent.
	req := start(control.WorkflowJob, mine)
	req.SearchAttributes = &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{control.SearchTenant: {Data: []byte(`"other"`)}}}
	if err := tenantMay("acme", "StartWorkflowExecution", req); err != nil {
		t.Fatal(err)
	}
	if got := string(req.SearchAttributes.IndexedFields[control.SearchTenant].Data); got != `"acme"` {
		t.Fatalf("BurlaTenant = %s, want \"acme\"", got)
	}
}

func TestNarrow(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "BurlaTenant = 'acme'"},
		{"BurlaJobState = 'Running'", "BurlaTenant = 'acme' AND (BurlaJobState = 'Running')"},
		{"a = 'x' OR b = 'y'", "BurlaTenant = 'acme' AND (a = 'x' OR b = 'y')"},
		{"a = ')'", "BurlaTenant = 'acme' AND (a = ')')"},
	} {
		got := c.in
		err := narrow("acme", &got)
		if err != nil || got != c.want {
			t.Errorf("narrow(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	// Queries that would escape the parentheses around them are refused.
	for _, q := range []string{
		"a = 'x') OR (BurlaTenant = 'other'",
		"a = 'x') OR BurlaTenant = 'other' OR (b = 'y'",
		"a = 'x",
		"(a = 'x'",
		`a = "x\") OR (BurlaTenant = 'other'`,
	} {
		if got := q; narrow("acme", &got) == nil {
			t.Errorf("narrow(%q) = %q, not refused", q, got)
		}
	}
}
