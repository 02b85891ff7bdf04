package burla

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

func TestProgressSaysWhatTheJobIsDoing(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	base := snapshot{id: "j-1", inputs: 1000, elapsed: 3 * time.Second, now: t0.Add(42 * time.Second)}
	waiting := func(r status.Reason, detail string) *status.Waiting {
		return &status.Waiting{Reason: r, Detail: detail, Since: t0}
	}
	for _, tc := range []struct {
		s    snapshot
		want string
	}{
		{base, "starting"},
		{snap(base, func(s *snapshot) {
			s.state = job.StatePlacing
			s.waiting = waiting(status.WaitNodesBooting, "3 nodes booting")
		}), "waiting 42s: 3 nodes booting"},
		{snap(base, func(s *snapshot) {
			s.state = job.StatePlacing
			s.waiting = waiting(status.WaitNodesBusy, "every node is busy with another job (j-2)")
		}), "waiting 42s: every node is busy with another job (j-2)"},
		{snap(base, func(s *snapshot) {
			s.state = job.StateRunning
			s.waiting = waiting(status.WaitUploadingInputs, "uploading inputs 200/1000")
		}), "uploading inputs 200/1000 (42s)"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.nodes = 2; s.busy = 4 }), "running on 2 nodes, 4 containers"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.nodes = 1; s.busy = 1; s.done = 5 }), "running on 1 node, 1 container"},
		// Calls run on nodes this client cannot see (a tenant's store).
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.done = 5 }), "running"},
		{snap(base, func(s *snapshot) {
			s.state = job.StateSucceeded
			s.waiting = waiting(status.WaitNodesBooting, "stale")
		}), "succeeded"},
	} {
		if got := tc.s.phase(); got != tc.want {
			t.Errorf("phase of %+v = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func snap(s snapshot, f func(*snapshot)) snapshot { f(&s); return s }

func TestProgressBarAndLine(t *testing.T) {
	s := snapshot{id: "j-1", state: job.StateRunning, nodes: 2, busy: 4, done: 500, inputs: 1000, rate: 250, elapsed: 2 * time.Second}
	bar := s.bar()
	for _, want := range []string{"burla j-1: running on 2 nodes, 4 containers", "[" + strings.Repeat("█", 12) + strings.Repeat("░", 12) + "]", "500/1000", "250/s", "ETA 2s"} {
		if !strings.Contains(bar, want) {
			t.Errorf("bar %q lacks %q", bar, want)
		}
	}
	line := s.line()
	want := "burla j-1: running on 2 nodes, 4 containers, 500/1000 done (50%), 250/s, ETA 2s, 2s elapsed"
	if line != want {
		t.Errorf("line = %q\nwant   %q", line, want)
	}
	if strings.ContainsAny(line, "\r\x1b") {
		t.Errorf("plain line %q has terminal control characters", line)
	}
}

func TestRateWindowForgetsOldSamples(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(0, 0)
	w.add(t0, 0)
	if r := w.add(t0.Add(time.Second), 100); r != 100 {
		t.Errorf("rate after 1s = %v, want 100", r)
	}
	for i := 2; i <= 20; i++ {
		w.add(t0.Add(time.Duration(i)*time.Second), 100+int64(i-1)*10)
	}
	// The last five seconds ran at 10/s; the first second's 100/s is forgotten.
	if r := w.add(t0.Add(21*time.Second), 300); r < 9 || r > 11 {
		t.Errorf("rate = %v, want about 10", r)
	}
}

func TestWaitingLineInBarAndPlainLine(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := snapshot{id: "j-1", state: job.StatePlacing, inputs: 1000, elapsed: 12 * time.Second, now: t0.Add(12 * time.Second),
		waiting: &status.Waiting{Reason: status.WaitNodesBusy, Detail: "every node is busy with another job", Since: t0}}
	if got, want := s.line(), "burla j-1: waiting 12s: every node is busy with another job, 0/1000 done (0%), 12s elapsed"; got != want {
		t.Errorf("line = %q\nwant   %q", got, want)
	}
	if bar := s.bar(); !strings.Contains(bar, "burla j-1: waiting 12s: every node is busy with another job [") {
		t.Errorf("bar %q does not say what the job waits for", bar)
	}
}

// TestPreparingShowsSubmitsSteps draws Submit's steps as the bar and as plain
// lines, and erases the bar when they are done.
func TestPreparingShowsSubmitsSteps(t *testing.T) {
	var out lockedWriter
	on := true
	o := options{spinner: &on, stderr: &out}
	p := startPreparing(&o)
	p.uploadingProgram("/nonexistent/program")
	waitOutput(t, &out, "burla: uploading the program (")
	p.buildingEnv("python:3.12")
	waitOutput(t, &out, "burla: building the environment from image python:3.12 (")
	p.stop()
	p.stop() // a second stop is harmless
	if got := out.String(); !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("the line was not erased at the end: %q", got[max(0, len(got)-100):])
	}

	off := false
	var quiet lockedWriter
	o = options{spinner: &off, stderr: &quiet}
	p = startPreparing(&o)
	p.buildingEnv("")
	time.Sleep(3 * drawEvery)
	p.stop()
	if quiet.String() != "" {
		t.Errorf("Spinner(false) showed %q", quiet.String())
	}
}

func waitOutput(t *testing.T, w *lockedWriter, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(w.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the display never showed %q: %q", want, w.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// uploadsStore records PutUpload calls; the rest of store.Backend is not used.
type uploadsStore struct {
	store.Backend
	mu   sync.Mutex
	puts []store.Upload
}

func (s *uploadsStore) PutUpload(ctx context.Context, jobID string, u store.Upload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts = append(s.puts, u)
	return nil
}

func (s *uploadsStore) Upload(ctx context.Context, jobID string) (store.Upload, error) {
	return store.Upload{}, store.ErrNotFound
}

func (s *uploadsStore) recorded() []store.Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.puts)
}

func TestRecordUploadIsCoarse(t *testing.T) {
	// An upload done within recordEvery records nothing: the seal says it is done.
	st := &uploadsStore{}
	var n atomic.Int64
	stop := recordUpload(context.Background(), st, "j-1", 100, &n)
	n.Store(100)
	stop()
	if got := st.recorded(); len(got) != 0 {
		t.Errorf("a quick upload recorded %+v; want nothing", got)
	}

	// A longer one is recorded as it grows, at most once per recordEvery, and not
	// while it does not grow.
	st = &uploadsStore{}
	n.Store(10)
	start := time.Now()
	stop = recordUpload(context.Background(), st, "j-1", 100, &n)
	defer stop()
	waitRecords(t, st, 1)
	n.Store(40)
	waitRecords(t, st, 2)
	time.Sleep(2 * recordEvery) // no growth: no write
	stop()
	got := st.recorded()
	if len(got) != 2 || got[0].Uploaded != 10 || got[1].Uploaded != 40 {
		t.Fatalf("recorded %+v; want 10 then 40 of 100, once each", got)
	}
	for _, u := range got {
		if u.Inputs != 100 || u.Started.Before(start) || u.Started.After(start.Add(time.Second)) {
			t.Errorf("record %+v: want 100 inputs, started at about %v", u, start)
		}
	}
	if !got[1].Updated.After(got[0].Updated) {
		t.Errorf("the second record's Updated %v is not after the first's %v", got[1].Updated, got[0].Updated)
	}
}

func waitRecords(t *testing.T, st *uploadsStore, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * recordEvery)
	for len(st.recorded()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("recorded %+v; want %d records by now", st.recorded(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
