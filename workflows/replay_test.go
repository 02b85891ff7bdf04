package workflows_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/workflows"
)

// The histories in testdata were recorded from real jobs on `burla dev` by
//
//	go test ./tests/e2e -run TestJobHistoryReplays -record
//
// and cluster_continued.json and node_continued.json, runs that began and ended
// with a continue-as-new, by
//
//	go test ./tests/churn -args -record
//
// Every change to JobWorkflow must still replay them (guard changes with
// workflow.GetVersion); a history recorded before a change stays here for good.

func replayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	workflows.Register(r, providers)
	return r
}

func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"job_success.json", "job_user_error.json", "job_v1_cluster_success.json", "job_v2_identity_success.json", "job_v3_path_success.json", "job_v3_path_user_error.json", "cluster_running.json", "node_completed.json", "cluster_continued.json", "node_continued.json",
		"envbuild_completed.json", "cluster_grew_reset_lost.json"} {
		if !slices.Contains(files, filepath.Join("testdata", want)) {
			t.Errorf("testdata has no %s", want)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := replay(f); err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
}

// replay replays the history in the JSON file path under the workflow ID it ran
// with: a job's, from its spec, and an environment build's, from its input (each
// checks that it runs under its own ID).
func replay(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return err
	}
	var opts worker.ReplayWorkflowHistoryOptions
	if started := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes(); started.GetWorkflowType().GetName() == control.WorkflowJob {
		var in control.JobInput
		if err := converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &in); err != nil {
			return fmt.Errorf("%s: the job's input: %w", path, err)
		}
		opts.OriginalExecution = workflow.Execution{ID: in.Spec.ID, RunID: "replay"}
	} else if started.GetWorkflowType().GetName() == control.WorkflowEnvBuild {
		var in control.EnvBuildInput
		if err := converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &in); err != nil {
			return fmt.Errorf("%s: the build's input: %w", path, err)
		}
		opts.OriginalExecution = workflow.Execution{ID: control.EnvBuildWorkflowID(in.Tenant, control.EnvDigest(in.Binary, in.Image)), RunID: "replay"}
	}
	return replayer().ReplayWorkflowHistoryWithOptions(nil, h, opts)
}

// TestReplayDetectsNondeterminism proves the replay test can fail: the recorded
// history is changed so that it scheduled an activity JobWorkflow would not.
func TestReplayDetectsNondeterminism(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "job_success.json"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `"`+control.ActivityRunJobOnNode+`"`, `"SomeOtherActivity"`, 1)
	if changed == string(b) {
		t.Fatal("the recorded history schedules no RunJobOnNode activity")
	}
	path := filepath.Join(t.TempDir(), "nondeterministic.json")
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replay(path); err == nil {
		t.Fatal("a history with a foreign activity replayed without error")
	}
}
