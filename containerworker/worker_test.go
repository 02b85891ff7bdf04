package containerworker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store"
)

// The test binary is also the program the worker runs: in worker mode, Main serves
// these functions.
var (
	_ = burla.Func("echo", func(ctx context.Context, x int) (int, error) {
		fmt.Printf("hello %d\n", x)
		fmt.Fprintf(os.Stderr, "warn %d", x)
		return x, nil
	})
	_ = burla.Func("flood", func(ctx context.Context, x int) (int, error) {
		for i := range 10_000 {
			fmt.Printf("input %d line %d\n", x, i)
		}
		return x, nil
	})
	// fickle exits its process on input 37 and hangs on input 81.
	_ = burla.Func("fickle", func(ctx context.Context, x int) (int, error) {
		fmt.Printf("fickle %d\n", x)
		switch x {
		case 37:
			os.Exit(3)
		case 81:
			<-ctx.Done()
			time.Sleep(time.Hour) // past its deadline, as a function that ignores ctx would
		}
		return x, nil
	})
	// prewarmed says whether this program was started by a Prewarm: with warmMark
	// in its environment (see TestRunTakesPrewarmedProgram).
	_ = burla.Func("prewarmed", func(ctx context.Context, x int) (bool, error) {
		return os.Getenv(warmMark) != "", nil
	})
	// hog holds x MB of memory for a while, as a call that needs it would.
	_ = burla.Func("hog", func(ctx context.Context, x int) (int, error) {
		b := make([]byte, x<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		time.Sleep(400 * time.Millisecond)
		return int(b[len(b)-4096]) * x, nil
	})
	_ = burla.Func("boom", func(ctx context.Context, x int) (int, error) {
		if x == 1 {
			panic("boom")
		}
		return x, nil
	})
)

// warmMark names, in a program's environment, a file the program creates as it
// starts: the test sets it while a Prewarm starts its program, and so can tell
// that program from one started later. It is an LC_ variable, one of the few that
// pass from a worker's environment to its programs (tenantbox.UserEnv).
const warmMark = "LC_BURLA_TEST_WARM_MARK"

func TestMain(m *testing.M) {
	if p := os.Getenv(warmMark); p != "" {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			panic(err)
		}
	}
	burla.Main()
	os.Exit(m.Run())
}

// memStore is an in-memory queue, results and logs for one job.
type memStore struct {
	mu      sync.Mutex
	chunks  []store.Chunk
	results []store.Result
	lines   []store.LogLine
	done    int
	// returned counts chunks given back with Claim.Return.
	returned int
	// failPuts makes PutResults fail.
	failPuts bool
	// attempt is the delivery every claim reports (1 when zero).
	attempt int
}

func (s *memStore) CreateJob(context.Context, job.Spec) error     { return nil }
func (s *memStore) Job(context.Context, string) (job.Spec, error) { return job.Spec{}, nil }
func (s *memStore) Seal(context.Context, string, int) error       { return nil }
func (s *memStore) DeleteInputs(context.Context, string) error    { return nil }
func (s *memStore) PutChunks(_ context.Context, _ string, cs []store.Chunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunks = append(s.chunks, cs...)
	return nil
}
func (s *memStore) Claim(ctx context.Context, _ string, wait time.Duration) (store.Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.chunks) == 0 {
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
		s.mu.Lock()
		return nil, store.ErrNoChunk
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return &memClaim{s: s, c: c, attempt: max(s.attempt, 1)}, nil
}
func (s *memStore) Progress(context.Context, string) (store.Progress, error) {
	return store.Progress{}, nil
}
func (s *memStore) PutResults(_ context.Context, _ string, rs []store.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPuts {
		return errors.New("store unavailable")
	}
	s.results = append(s.results, rs...)
	return nil
}
func (s *memStore) PutLogs(_ context.Context, _ string, ls []store.LogLine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, ls...)
	return nil
}
func (s *memStore) WatchResults(context.Context, string, func([]store.Result)) (store.Watch, error) {
	return nil, errors.New("not used")
}
func (s *memStore) WatchLogs(context.Context, string, func([]store.LogLine)) (store.Watch, error) {
	return nil, errors.New("not used")
}

type memClaim struct {
	s       *memStore
	c       store.Chunk
	attempt int
}

func (c *memClaim) Chunk() store.Chunk           { return c.c }
func (c *memClaim) Attempt() int                 { return c.attempt }
func (c *memClaim) Extend(context.Context) error { return nil }
func (c *memClaim) Return(context.Context) error {
	c.s.mu.Lock()
	c.s.returned++
	c.s.chunks = append(c.s.chunks, c.c)
	c.s.mu.Unlock()
	return nil
}
func (c *memClaim) Done(context.Context) error {
	c.s.mu.Lock()
	c.s.done++
	c.s.mu.Unlock()
	return nil
}

func spec(fn string) job.Spec {
	return job.Spec{ID: "j-test", Function: fn, Binary: strings.Repeat("0", 64), Inputs: 4, FuncCPU: 1, Lease: time.Second}
}

func chunks(n, per int) []store.Chunk {
	var cs []store.Chunk
	for i := 0; i < n; i += per {
		c := store.Chunk{Seq: int64(i / per)}
		for j := i; j < min(i+per, n); j++ {
			c.Items = append(c.Items, store.Item{Index: int64(j), Data: []byte(fmt.Sprint(j))})
		}
		cs = append(cs, c)
	}
	return cs
}

// run runs the worker on s until every chunk is done or it returns.
func run(t *testing.T, s *memStore, sp job.Spec, cfg containerworker.Config) error {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = s
	want := len(s.chunks)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- containerworker.New(cfg).Run(ctx, sp, exe) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Millisecond):
		}
		s.mu.Lock()
		finished := s.done == want
		s.mu.Unlock()
		if finished {
			cancel()
			return <-errc
		}
	}
}

func TestRunAttributesOutput(t *testing.T) {
	s := &memStore{chunks: chunks(6, 4)}
	if err := run(t, s, spec("echo"), containerworker.Config{}); err != nil {
		t.Fatal(err)
	}
	if len(s.results) != 6 {
		t.Fatalf("%d results; want 6", len(s.results))
	}
	for i, r := range s.results {
		if r.Index != int64(i) || string(r.Output) != fmt.Sprint(i) || r.Err != nil {
			t.Errorf("result %d = %+v", i, r)
		}
	}
	got := map[string]int64{}
	for _, l := range s.lines {
		got[l.Text] = l.Index
	}
	for i := range int64(6) {
		if idx, ok := got[fmt.Sprintf("hello %d", i)]; !ok || idx != i {
			t.Errorf("stdout of input %d attributed to %d (present %v)", i, idx, ok)
		}
		if idx, ok := got[fmt.Sprintf("warn %d", i)]; !ok || idx != i {
			t.Errorf("stderr of input %d (no newline) attributed to %d (present %v)", i, idx, ok)
		}
	}
}

// The worker sends calls ahead of the one running; over many calls, in chunks larger
// than its window, each line is still its own call's.
func TestRunAttributesPipelinedOutput(t *testing.T) {
	const n = 1000
	s := &memStore{chunks: chunks(n, 300)}
	if err := run(t, s, spec("echo"), containerworker.Config{}); err != nil {
		t.Fatal(err)
	}
	if len(s.results) != n {
		t.Fatalf("%d results; want %d", len(s.results), n)
	}
	lines := 0
	for _, l := range s.lines {
		var i int64
		if _, err := fmt.Sscanf(l.Text, "hello %d", &i); err != nil {
			if _, err := fmt.Sscanf(l.Text, "warn %d", &i); err != nil {
				t.Fatalf("unexpected line %q", l.Text)
			}
		}
		if i != l.Index {
			t.Errorf("line %q attributed to input %d", l.Text, l.Index)
		}
		lines++
	}
	if lines != 2*n {
		t.Errorf("%d lines; want %d", lines, 2*n)
	}
}

// A program that dies, or hangs past the timeout, with calls sent ahead of it fails
// only the call it was running: with errors collected, every other input has its
// own result, from a new program.
func TestRunPipelineSurvivesExitAndTimeout(t *testing.T) {
	const n = 120
	s := &memStore{chunks: chunks(n, n)}
	sp := spec("fickle")
	sp.ReturnErrors = true
	sp.InputTimeout = 300 * time.Millisecond
	if err := run(t, s, sp, containerworker.Config{}); err != nil {
		t.Fatal(err)
	}
	got := map[int64]store.Result{}
	for _, r := range s.results {
		if _, dup := got[r.Index]; dup {
			t.Errorf("input %d has two results", r.Index)
		}
		got[r.Index] = r
	}
	for i := range int64(n) {
		r, ok := got[i]
		switch {
		case !ok:
			t.Errorf("input %d: no result", i)
		case i == 37:
			if r.Err == nil || r.Err.Kind != store.KindExit || !strings.Contains(r.Err.Message, "exited with status 3") {
				t.Errorf("input 37: %+v; want an exit with status 3", r.Err)
			}
		case i == 81:
			if r.Err == nil || r.Err.Kind != store.KindTimeout {
				t.Errorf("input 81: %+v; want a timeout", r.Err)
			}
		case r.Err != nil || string(r.Output) != fmt.Sprint(i):
			t.Errorf("input %d: %+v", i, r)
		}
	}
	for _, l := range s.lines {
		if l.Text != fmt.Sprintf("fickle %d", l.Index) {
			t.Errorf("line %q attributed to input %d", l.Text, l.Index)
		}
	}
}

func TestRunCutsFloodedOutput(t *testing.T) {
	s := &memStore{chunks: chunks(2, 1)}
	if err := run(t, s, spec("flood"), containerworker.Config{LogLimit: 1000}); err != nil {
		t.Fatal(err)
	}
	per := map[int64]int{}
	cut := map[int64]bool{}
	for _, l := range s.lines {
		per[l.Index]++
		if strings.Contains(l.Text, "cut after 1000 bytes") {
			cut[l.Index] = true
		}
	}
	for i := range int64(2) {
		if !cut[i] || per[i] > 100 {
			t.Errorf("input %d: %d lines kept, cut note %v; want its output cut at 1000 bytes with a note", i, per[i], cut[i])
		}
	}
	if len(s.results) != 2 {
		t.Errorf("%d results; want both inputs to finish", len(s.results))
	}
}

func TestRunFailsFast(t *testing.T) {
	s := &memStore{chunks: chunks(4, 4)}
	err := run(t, s, spec("boom"), containerworker.Config{})
	var je *containerworker.JobError
	if !errors.As(err, &je) || je.Type != control.ErrUserError || je.Index != 1 {
		t.Fatalf("error %v; want a UserError for input 1", err)
	}
	var failed *store.Result
	for i := range s.results {
		if s.results[i].Err != nil {
			failed = &s.results[i]
		}
	}
	if failed == nil || failed.Index != 1 || failed.Err.Kind != store.KindPanic || !strings.Contains(failed.Err.Stack, "worker_test.go") {
		t.Errorf("failed result %+v; want input 1's panic with its stack", failed)
	}
}

func TestRunRefusesUnknownFunction(t *testing.T) {
	s := &memStore{chunks: chunks(1, 1)}
	err := run(t, s, spec("nosuch"), containerworker.Config{})
	var je *containerworker.JobError
	if !errors.As(err, &je) || je.Type != control.ErrUnknownFunction || !strings.Contains(je.Message, `"nosuch"`) || !strings.Contains(je.Message, "echo") {
		t.Fatalf("error %v; want UnknownFunction naming nosuch and what is registered", err)
	}
}

func TestRunRefusesProgramWithoutWorkerMode(t *testing.T) {
	s := &memStore{chunks: chunks(1, 1)}
	exe := "/bin/true"
	cfg := containerworker.Config{Store: s}
	err := containerworker.New(cfg).Run(context.Background(), spec("echo"), exe)
	var je *containerworker.JobError
	if !errors.As(err, &je) || je.Type != control.ErrBadBinary || !strings.Contains(je.Message, "burla.Main()") {
		t.Fatalf("error %v; want BadBinary saying burla.Main() must come first", err)
	}
}

// A program prewarmed for a job's binary and tenant is the one the job's calls run
// in; one prewarmed for another binary, or for another tenant, is not.
func TestRunTakesPrewarmedProgram(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		warm, tenant string
		want         bool
	}{{exe, job.TenantOf(spec("prewarmed").ID), true}, {"/bin/true", job.DefaultTenant, false}, {exe, "other", false}} {
		s := &memStore{chunks: chunks(1, 1)}
		w := containerworker.New(containerworker.Config{Store: s})
		// The prewarmed program starts with warmMark set; any started after it
		// is unset starts without.
		mark := filepath.Join(t.TempDir(), "warm")
		os.Setenv(warmMark, mark)
		w.Prewarm(c.warm, c.tenant)
		if c.warm == exe {
			waitFile(t, mark)
		}
		os.Unsetenv(warmMark)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx, spec("prewarmed"), exe) }()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			s.mu.Lock()
			n := len(s.results)
			s.mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				break
			}
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if len(s.results) != 1 || s.results[0].Err != nil {
			t.Fatalf("prewarmed %s for %s: results %+v", c.warm, c.tenant, s.results)
		}
		if got := string(s.results[0].Output) == "true"; got != c.want {
			t.Errorf("prewarmed %s for %s: the call ran in the prewarmed program = %v; want %v", c.warm, c.tenant, got, c.want)
		}
	}
}

// waitFile waits until the file at p exists.
func waitFile(t *testing.T, p string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within 30s", p)
		}
	}
}

// A chunk whose results could not be stored is not marked done: its lease returns
// it to the queue, to run again.
func TestRunLeavesChunkWhoseResultsAreLost(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &memStore{chunks: chunks(3, 3), failPuts: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := containerworker.New(containerworker.Config{Store: s}).Run(ctx, spec("echo"), exe); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != 0 || len(s.chunks) != 0 {
		t.Errorf("%d chunks marked done, %d unclaimed; want the one chunk claimed and left to its lease", s.done, len(s.chunks))
	}
}

// A chunk whose results cannot be stored on its last delivery fails the job,
// naming its first input and why, instead of going back to the queue for ever.
func TestRunFailsAChunkOnItsLastDelivery(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &memStore{chunks: chunks(6, 3)[1:], failPuts: true, attempt: containerworker.MaxDeliveries}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = containerworker.New(containerworker.Config{Store: s}).Run(ctx, spec("echo"), exe)
	var je *containerworker.JobError
	if !errors.As(err, &je) || je.Type != control.ErrChunkFailed || je.Index != 3 ||
		!strings.Contains(je.Message, "input 3") || !strings.Contains(je.Message, "store unavailable") {
		t.Fatalf("Run returned %v; want a ChunkFailed naming input 3 and the store's error", err)
	}
	if ctx.Err() != nil {
		t.Error("Run returned only when its context ended")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != 0 {
		t.Errorf("%d chunks marked done; want none", s.done)
	}
}
