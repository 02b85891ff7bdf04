package activities_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
)

// agedBlobs is a blob store whose blobs were written when written says.
type agedBlobs struct {
	memblob.Store
	written map[string]time.Time
}

func (a *agedBlobs) put(t *testing.T, key string, at time.Time) {
	t.Helper()
	if err := a.Put(context.Background(), key, strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	a.written[key] = at
}

func (a *agedBlobs) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	infos, err := a.Store.List(ctx, prefix)
	for i := range infos {
		infos[i].Modified = a.written[infos[i].Key]
	}
	return infos, err
}

// jobsAt answers for jobs' workflows: closed at the time given, or running
// (zero time); a job not in the map is unknown to Temporal.
type jobsAt struct {
	noCluster
	closed map[string]time.Time
}

func (j *jobsAt) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	at, ok := j.closed[id]
	if !ok {
		return nil, serviceerror.NewNotFound("workflow not found")
	}
	info := &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_RUNNING}
	if !at.IsZero() {
		info = &workflowpb.WorkflowExecutionInfo{Status: enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, CloseTime: timestamppb.New(at)}
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: info}, nil
}

// released says which jobs' clients read every result.
type released struct {
	store.Jobs
	ids []string
}

func (r *released) LastHeartbeat(_ context.Context, id string) (time.Time, error) {
	if slices.Contains(r.ids, id) {
		return time.Time{}, store.ErrReleased
	}
	return time.Now(), nil
}

// recordsOf is a store's job records, each last changed when the map says.
type recordsOf struct {
	store.Queue
	updated map[string]time.Time
}

func (r *recordsOf) ListJobs(context.Context) ([]store.JobRecord, error) {
	var out []store.JobRecord
	for id, at := range r.updated {
		out = append(out, store.JobRecord{ID: id, Updated: at})
	}
	return out, nil
}

func (r *recordsOf) DeleteJob(_ context.Context, id string) error {
	delete(r.updated, id)
	return nil
}

// The collector deletes the large inputs and environment of ended jobs, their
// large outputs once read (after a grace) or a retention after they ended, the
// records of jobs that ended a retention ago, and programs no job ran for the
// program TTL; it keeps everything of running jobs however old, tenants' shared
// files, and blobs of jobs not started yet.
func TestCollect(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const (
		running  = "j-acme-0000000000000running1"
		readOld  = "j-acme-000000000000readold01"
		readNew  = "j-acme-000000000000readnew01"
		unread   = "j-acme-0000000000000unread01"
		long     = "j-acme-000000000000000long01" // ran 9 days, ended a day ago
		ancient  = "j-acme-000000000000ancient01" // ended 8 days ago
		unknown  = "j-acme-000000000000unknown01"
		starting = "j-acme-00000000000starting01"
		forgot   = "j-acme-0000000000000forgot01" // Temporal forgot it; its records are 8 days old
	)
	for _, id := range []string{running, readOld, readNew, unread, long, ancient, unknown, starting, forgot} {
		if !job.ValidID(id) {
			t.Fatalf("%s is not a job ID", id)
		}
	}
	b := &agedBlobs{written: map[string]time.Time{}}
	for _, id := range []string{running, readOld, readNew, unread, long} {
		b.put(t, job.InputKey(id, 3), now.Add(-40*24*time.Hour))
		b.put(t, job.OutputKey(id, 3), now.Add(-2*24*time.Hour))
		b.put(t, job.EnvKey(id), now.Add(-40*24*time.Hour))
	}
	b.put(t, job.OutputKey(long, 4), now.Add(-9*24*time.Hour))
	b.put(t, job.OutputKey(running, 4), now.Add(-9*24*time.Hour))
	b.put(t, job.OutputKey(ancient, 0), now.Add(-9*24*time.Hour))
	b.put(t, job.InputKey(unknown, 0), now.Add(-2*time.Hour))
	b.put(t, job.InputKey(starting, 0), now.Add(-10*time.Minute))
	oldProgram, usedProgram := job.BinaryKeyFor("acme", strings.Repeat("a", 64)), job.BinaryKeyFor("acme", strings.Repeat("b", 64))
	b.put(t, oldProgram, now.Add(-31*24*time.Hour))
	b.put(t, usedProgram, now.Add(-31*24*time.Hour))
	b.put(t, job.UsedKey(usedProgram), now.Add(-24*time.Hour))
	b.put(t, job.UsedKey(job.BinaryKeyFor("acme", strings.Repeat("c", 64))), now.Add(-40*24*time.Hour)) // its program is gone
	shared := job.SharedKey("acme", "notes.txt")
	b.put(t, shared, now.Add(-400*24*time.Hour))

	records := &recordsOf{updated: map[string]time.Time{
		running: now.Add(-9 * 24 * time.Hour), // a detached job: nothing has changed its records since its upload
		long:    now.Add(-24 * time.Hour), ancient: now.Add(-8 * 24 * time.Hour),
		readOld: now.Add(-2 * time.Hour), forgot: now.Add(-8 * 24 * time.Hour),
		starting: now.Add(-10 * time.Minute),
	}}
	c := &activities.Control{
		Queue: records,
		Blobs: b,
		Now:   func() time.Time { return now },
		Jobs:  &released{ids: []string{readOld, readNew}},
		Temporal: &jobsAt{closed: map[string]time.Time{
			running: {}, readOld: now.Add(-2 * time.Hour), readNew: now.Add(-10 * time.Minute),
			unread: now.Add(-24 * time.Hour), long: now.Add(-24 * time.Hour), ancient: now.Add(-8 * 24 * time.Hour),
		}},
	}
	got, err := (&activities.Collector{Control: c}).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		job.InputKey(running, 3), job.OutputKey(running, 3), job.OutputKey(running, 4), job.EnvKey(running),
		job.OutputKey(readNew, 3), job.OutputKey(unread, 3), job.OutputKey(long, 3), job.OutputKey(long, 4),
		job.InputKey(starting, 0), usedProgram, job.UsedKey(usedProgram), shared,
	}
	infos, err := b.Store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, info := range infos {
		left = append(left, info.Key)
	}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("left after the collection:\n%s\nwant:\n%s", strings.Join(left, "\n"), strings.Join(want, "\n"))
	}
	if got.Blobs != len(b.written)-len(want) || got.Bytes != int64(4*got.Blobs) || got.Jobs != 2 {
		t.Errorf("collected %+v; want %d blobs of 4 bytes and 2 jobs", got, len(b.written)-len(want))
	}
	var kept []string
	for id := range records.updated {
		kept = append(kept, id)
	}
	slices.Sort(kept)
	if want := slices.Sorted(slices.Values([]string{long, readOld, running, starting})); !slices.Equal(kept, want) {
		t.Errorf("records kept of jobs %q; want those of %q (deleted: ancient and forgot)", kept, want)
	}
}

// FinishJob marks the job's program used, so that the collector keeps it.
func TestFinishJobMarksItsProgramUsed(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	c := &activities.Control{Queue: &queue{}, Blobs: blobs}
	const id = "j-acme-0123456789abcdefmark"
	digest := strings.Repeat("d", 64)
	if err := c.FinishJob(ctx, control.FinishInput{JobID: id, State: job.StateSucceeded, Binary: digest}); err != nil {
		t.Fatal(err)
	}
	if ok, err := blobs.Has(ctx, job.UsedKey(job.ManifestKeyFor("acme", digest))); err != nil || !ok {
		t.Errorf("no mark of the program's use: %v, %v", ok, err)
	}
}

// A program shipped in chunks keeps its packs, and the packs of the versions its
// deltas rest on, while it is kept; a pack that no kept program names goes once
// it is old, and not before: its manifest may be on its way.
func TestCollectKeepsThePacksOfKeptPrograms(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	b := &agedBlobs{written: map[string]time.Time{}}
	s := &ship.Sender{Blobs: b, Tenant: "acme", Dir: t.TempDir()}
	v1 := bytes.Repeat([]byte("the first version of a program, "), 20000)
	v2 := append(bytes.Clone(v1[:300000]), append([]byte("a change"), v1[300000:]...)...)
	v3 := bytes.Repeat([]byte("another program altogether, "), 20000)
	sha := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	var packsOf [][]string
	for _, v := range [][]byte{v1, v2, v3} {
		before, _ := b.Store.List(ctx, "pack-")
		if _, err := s.Send(ctx, v, sha(v)); err != nil {
			t.Fatal(err)
		}
		after, _ := b.Store.List(ctx, "pack-")
		var added []string
		for _, a := range after {
			if !slices.ContainsFunc(before, func(x blob.Info) bool { return x.Key == a.Key }) {
				added = append(added, a.Key)
			}
		}
		if len(added) != 1 {
			t.Fatalf("a version added packs %q; want one", added)
		}
		packsOf = append(packsOf, added)
	}
	old := now.Add(-31 * 24 * time.Hour)
	for key := range b.written {
		b.written[key] = old
	}
	infos, _ := b.Store.List(ctx, "")
	for _, info := range infos {
		b.written[info.Key] = old
	}
	// v1 is unused, v2 (a delta on v1) was used yesterday, v3 is unused.
	b.put(t, job.UsedKey(job.ManifestKeyFor("acme", sha(v2))), now.Add(-24*time.Hour))
	orphanNew := job.PackKeyFor("acme", strings.Repeat("e", 64))
	b.put(t, orphanNew, now.Add(-time.Hour))
	c := &activities.Control{Queue: &queue{}, Blobs: b, Now: func() time.Time { return now }, Temporal: &jobsAt{}}
	if _, err := (&activities.Collector{Control: c}).Collect(ctx); err != nil {
		t.Fatal(err)
	}
	left, _ := b.Store.List(ctx, "")
	var keys []string
	for _, info := range left {
		keys = append(keys, info.Key)
	}
	want := []string{
		job.ManifestKeyFor("acme", sha(v2)), job.UsedKey(job.ManifestKeyFor("acme", sha(v2))),
		packsOf[0][0], packsOf[1][0], orphanNew,
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("left after the collection:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
}
