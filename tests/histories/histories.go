// Package histories fetches workflow histories from a cluster's Temporal server,
// replays them against today's workflows, and keeps them as the replay tests'
// testdata (workflows/testdata), for the end-to-end tests that record them.
package histories

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/workflows"
)

// Fetch returns the history of a workflow's run so far; an empty run is its
// current one.
func Fetch(ctx context.Context, tc client.Client, id, run string) (*historypb.History, error) {
	var h historypb.History
	it := tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", id, err)
		}
		h.Events = append(h.Events, e)
	}
	return &h, nil
}

// Replay replays h against today's job, cluster, node and environment build workflows, under the
// workflow ID and run it ran with (a job checks that it runs under its own ID).
func Replay(h *historypb.History, id, run string) error {
	r := worker.NewWorkflowReplayer()
	workflows.Register(r, provider.Declared())
	return r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id, RunID: run}})
}

// Record writes h as workflows/testdata/name.json, from a test in tests/<package>,
// and returns the file's path.
func Record(name string, h *historypb.History) (string, error) {
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		return "", err
	}
	path := filepath.Join("..", "..", "workflows", "testdata", name+".json")
	return path, os.WriteFile(path, b, 0o644)
}
