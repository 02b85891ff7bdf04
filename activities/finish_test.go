package activities_test

import (
	"context"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

// queue records the jobs whose inputs were deleted.
type queue struct {
	store.Queue
	deleted []string
}

func (q *queue) DeleteInputs(_ context.Context, jobID string) error {
	q.deleted = append(q.deleted, jobID)
	return nil
}

// A finished job's environment, which holds secrets, is deleted with its inputs;
// its large outputs stay for the client to read.
func TestFinishJobDeletesEnvironment(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	const id = "j-acme-0123456789abcdefghij"
	for _, key := range []string{job.EnvKey(id), "out-" + id + "-3", job.EnvKey("j-acme-other0123456789abcd")} {
		if err := blobs.Put(ctx, key, strings.NewReader(`{"TOKEN":"secret"}`)); err != nil {
			t.Fatal(err)
		}
	}
	q := &queue{}
	c := &activities.Control{Queue: q, Blobs: blobs}
	for range 2 { // a retried activity finds the environment gone
		if err := c.FinishJob(ctx, control.FinishInput{JobID: id, State: job.StateSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	if len(q.deleted) != 2 || q.deleted[0] != id {
		t.Errorf("inputs deleted for %q; want %s", q.deleted, id)
	}
	for key, want := range map[string]bool{job.EnvKey(id): false, "out-" + id + "-3": true, job.EnvKey("j-acme-other0123456789abcd"): true} {
		if has, _ := blobs.Has(ctx, key); has != want {
			t.Errorf("after FinishJob, %s present = %v; want %v", key, has, want)
		}
	}
}
