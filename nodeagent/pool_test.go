package nodeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/wire"
)

// fakeRuntime starts fake workers that speak the agent protocol: ready at once, a
// "run" makes them busy, a "stop" makes them idle, a closed stdin ends them. Each
// records the commands it was sent and the program it was given.
type fakeRuntime struct {
	mu      sync.Mutex
	started int
	workers map[int]*fakeWorker // by slot, the latest
	// linger, while set, holds every worker whose stdin has ended (or that was
	// killed) from exiting until it is closed.
	linger chan struct{}
	// hold makes a start in these slots hang until its context ends; starting
	// counts such starts, aborted those whose context ended.
	hold              map[int]bool
	starting, aborted int
	// order records, in order, each worker's exit ("exit N") and each job given to
	// one ("run N").
	order []string
}

// note appends what happened to r.order.
func (r *fakeRuntime) note(what string, slot int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, what+" "+strconv.Itoa(slot))
}

type fakeWorker struct {
	rt      *fakeRuntime
	slot    int
	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter
	stdoutR *io.PipeReader
	stdoutW *io.PipeWriter
	done    chan struct{}

	mu       sync.Mutex
	enc      *json.Encoder
	job      string
	cpus     float64
	memoryMB int
	cmds     []wire.Command
	provided string
}

// report sends e to the agent as the worker.
func (w *fakeWorker) report(e wire.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.enc.Encode(e)
}

// last returns the last command of op the worker was sent.
func (w *fakeWorker) last(op string) (wire.Command, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.cmds) - 1; i >= 0; i-- {
		if w.cmds[i].Op == op {
			return w.cmds[i], true
		}
	}
	return wire.Command{}, false
}

func (r *fakeRuntime) Name() string                                  { return "fake" }
func (r *fakeRuntime) Cleanup(context.Context, string, string) error { return nil }

func (r *fakeRuntime) Start(ctx context.Context, spec runtime.WorkerSpec) (runtime.Worker, error) {
	r.mu.Lock()
	if r.hold[spec.Slot] {
		r.starting++
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return nil, ctx.Err()
	}
	r.mu.Unlock()
	w := &fakeWorker{rt: r, slot: spec.Slot, done: make(chan struct{}), cpus: spec.CPUs}
	w.stdinR, w.stdinW = io.Pipe()
	w.stdoutR, w.stdoutW = io.Pipe()
	r.mu.Lock()
	r.started++
	if r.workers == nil {
		r.workers = map[int]*fakeWorker{}
	}
	r.workers[spec.Slot] = w
	r.mu.Unlock()
	go w.serve()
	return w, nil
}

func (w *fakeWorker) serve() {
	defer close(w.done)
	defer w.rt.note("exit", w.slot)
	defer w.stdoutW.Close()
	defer func() {
		w.rt.mu.Lock()
		linger := w.rt.linger
		w.rt.mu.Unlock()
		if linger != nil {
			<-linger
		}
	}()
	enc := json.NewEncoder(w.stdoutW)
	w.mu.Lock()
	w.enc = enc
	w.mu.Unlock()
	enc.Encode(wire.Event{Type: wire.EventReady})
	sc := bufio.NewScanner(w.stdinR)
	for sc.Scan() {
		var c wire.Command
		json.Unmarshal(sc.Bytes(), &c)
		if c.Op == wire.OpRun {
			w.rt.note("run", w.slot) // (before w.mu: live takes r.mu, then w.mu)
		}
		w.mu.Lock()
		w.cmds = append(w.cmds, c)
		switch c.Op {
		case wire.OpRun:
			w.job = c.Spec.ID
			enc.Encode(wire.Event{Type: wire.EventStats,
				Stats: &wire.Stats{Done: 3, Failed: 1, Claims: []float64{0.002}, Chunks: []float64{0.01, 0.02}}})
		case wire.OpStop:
			enc.Encode(wire.Event{Type: wire.EventIdle, Job: w.job})
			w.job = ""
		}
		w.mu.Unlock()
	}
}

func (w *fakeWorker) Stdin() io.WriteCloser { return w.stdinW }
func (w *fakeWorker) Stdout() io.ReadCloser { return w.stdoutR }
func (w *fakeWorker) Done() <-chan struct{} { return w.done }
func (w *fakeWorker) Err() error            { return nil }
func (w *fakeWorker) Kill()                 { w.stdinW.Close() }
func (w *fakeWorker) Resize(_ context.Context, cpus float64, memoryMB int) error {
	w.mu.Lock()
	w.cpus, w.memoryMB = cpus, memoryMB
	w.mu.Unlock()
	return nil
}

// Provide gives the worker the program under a path of its own.
func (w *fakeWorker) Provide(path string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.provided = path
	if path == "" {
		return "", nil
	}
	return fmt.Sprintf("/worker-%d/%s", w.slot, filepath.Base(path)), nil
}

// commands returns the ops the worker was sent, with their tenants for warm.
func (w *fakeWorker) commands() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ops []string
	for _, c := range w.cmds {
		switch c.Op {
		case wire.OpWarm:
			ops = append(ops, c.Op+":"+c.Tenant+":"+c.Binary)
		case wire.OpRun:
			ops = append(ops, c.Op+":"+c.Spec.ID+":"+c.Binary)
		default:
			ops = append(ops, c.Op)
		}
	}
	return ops
}

func (w *fakeWorker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// worker returns the latest worker started in slot.
func (r *fakeRuntime) worker(slot int) *fakeWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workers[slot]
}

func (r *fakeRuntime) starts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started
}

// live returns, for the latest worker of each slot still running, its job and CPUs.
func (r *fakeRuntime) live() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for slot := range 8 {
		w, ok := r.workers[slot]
		if !ok {
			continue
		}
		select {
		case <-w.done:
			continue
		default:
		}
		w.mu.Lock()
		out = append(out, w.job+":"+strconv.FormatFloat(w.cpus, 'f', -1, 64))
		w.mu.Unlock()
	}
	return out
}

func newTestPool(t *testing.T, slots int) (*pool, *fakeRuntime) {
	return newEnvTestPool(t, slots, nil)
}

// newEnvTestPool makes a pool of cpus slots in the default environment and cpus
// more in each of envs, and waits until all are warm.
func newEnvTestPool(t *testing.T, cpus int, envs []string) (*pool, *fakeRuntime) {
	rt := &fakeRuntime{}
	// 1 CPU and 1 GB per worker.
	p := newPool(rt, runtime.WorkerSpec{Cluster: "c", Node: "n", CPUs: 1, MemoryMB: 1024}, []string{"burla", "container-worker"}, cpus, envs,
		slog.New(slog.DiscardHandler), func(context.Context, string, string) (string, error) { return "/bin/prog", nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.supervise(ctx); close(done) }()
	t.Cleanup(func() {
		rt.mu.Lock()
		if rt.linger != nil {
			close(rt.linger)
			rt.linger = nil
		}
		rt.mu.Unlock()
		cancel()
		p.close()
		<-done
	})
	waitFor(t, "warm workers", func() bool { _, warm, _ := p.state(); return warm == p.size() })
	return p, rt
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPoolGivesAFuncCPUJobWholeCPUs(t *testing.T) {
	p, rt := newTestPool(t, 4)
	spec := job.Spec{ID: "j-big", FuncCPU: 2}
	if _, err := p.Start(context.Background(), spec, 8); err != nil {
		t.Fatal(err)
	}
	want := []string{"j-big:2", "j-big:2"}
	waitFor(t, "two 2-CPU workers on the job, the rest stopped", func() bool { return slices.Equal(rt.live(), want) })
	p.Stop(context.Background(), spec.ID)
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	want = []string{":1", ":1", ":1", ":1"}
	waitFor(t, "four fresh 1-CPU workers after the reset", func() bool { return slices.Equal(rt.live(), want) })
	if rt.started != 4+4 {
		t.Errorf("%d workers started; want 4 at first and 4 at the reset", rt.started)
	}
}

// Once a job ends, every worker that served it is replaced by a fresh one, in the
// background: Stop does not wait for them, the next job finds them warm, and the
// workflow's Reset, after Stop, has nothing left to do. A worker the job did not use
// is kept.
func TestPoolReplacesWorkersAfterAJob(t *testing.T) {
	p, rt := newTestPool(t, 3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.resets)
	spec := job.Spec{ID: job.NewID(time.Now(), "acme"), Binary: strings.Repeat("a", 64), FuncCPU: 1}
	if _, err := p.Start(context.Background(), spec, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two workers on the job", func() bool { _, _, busy := p.state(); return busy == 2 })
	served := []*fakeWorker{rt.worker(0), rt.worker(1)}
	idle := rt.worker(2)
	for _, w := range served {
		if got := w.provided; got != "/bin/prog" {
			t.Errorf("worker %d was given program %q; want the job's, /bin/prog", w.slot, got)
		}
	}
	p.Stop(context.Background(), spec.ID)
	waitFor(t, "the job's workers replaced and the node warm", func() bool {
		_, warm, _ := p.state()
		return warm == 3 && rt.worker(0) != served[0] && rt.worker(1) != served[1]
	})
	for _, w := range served {
		if !w.exited() {
			t.Errorf("worker %d that served the job still runs", w.slot)
		}
	}
	if rt.worker(2) != idle || idle.exited() {
		t.Errorf("the worker the job did not use was replaced")
	}
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rt.starts(); got != 3+2 {
		t.Errorf("%d workers started; want 3 at first and 2 after the job", got)
	}
	waitFor(t, "the reset measured", func() bool { return gathered(t, reg)["burla_node_reset_seconds_count"] == 1 })
	// The next job runs on fresh workers, not on those that served the last one.
	next := job.Spec{ID: job.NewID(time.Now(), "acme"), Binary: strings.Repeat("a", 64), FuncCPU: 1}
	if _, err := p.Start(context.Background(), next, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two workers on the next job", func() bool { _, _, busy := p.state(); return busy == 2 })
	for _, w := range served {
		if cmds := w.commands(); slices.ContainsFunc(cmds, func(c string) bool { return strings.Contains(c, next.ID) }) {
			t.Errorf("worker %d, which served the last job, got the next: %v", w.slot, cmds)
		}
	}
}

// A fresh worker prewarms the last job's program for that job's tenant: the next
// job of the same tenant runs in it, a job of another tenant in a worker started
// for it that never prewarmed anything.
func TestPoolPrewarmsForTheSameTenantOnly(t *testing.T) {
	for _, c := range []struct {
		name, tenant string
		warmKept     bool
	}{
		{"same tenant", "acme", true},
		{"another tenant", "globex", false},
		{"the default tenant", job.DefaultTenant, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, rt := newTestPool(t, 1)
			first := job.Spec{ID: job.NewID(time.Now(), "acme"), Binary: strings.Repeat("a", 64), FuncCPU: 1}
			if _, err := p.Start(context.Background(), first, 1); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the worker on the first job", func() bool { _, _, busy := p.state(); return busy == 1 })
			served := rt.worker(0)
			p.Stop(context.Background(), first.ID)
			waitFor(t, "a fresh worker prewarming the program for acme", func() bool {
				w := rt.worker(0)
				return w != served && slices.Equal(w.commands(), []string{"warm:acme:/worker-0/prog"})
			})
			warm := rt.worker(0)
			next := job.Spec{ID: job.NewID(time.Now(), c.tenant), Binary: strings.Repeat("a", 64), FuncCPU: 1}
			if _, err := p.Start(context.Background(), next, 1); err != nil {
				t.Fatal(err)
			}
			run := "run:" + next.ID + ":/worker-0/prog"
			waitFor(t, "a worker on the next job", func() bool { return slices.Contains(rt.worker(0).commands(), run) })
			w := rt.worker(0)
			if c.warmKept {
				if w != warm || !slices.Equal(w.commands(), []string{"warm:acme:/worker-0/prog", run}) {
					t.Errorf("the next job of acme ran in a worker sent %v; want the prewarmed one", w.commands())
				}
				if got := rt.starts(); got != 2 {
					t.Errorf("%d workers started; want 2 (the first, the fresh one after the job)", got)
				}
				return
			}
			if w == warm || !warm.exited() {
				t.Errorf("a job of %s ran in the worker prewarmed for acme, or that worker lives on", c.tenant)
			}
			if got := w.commands(); !slices.Equal(got, []string{run}) {
				t.Errorf("a job of %s ran in a worker sent %v; want one sent only the job", c.tenant, got)
			}
		})
	}
}

func TestPoolKeepsIdleWorkersForSmallJobs(t *testing.T) {
	p, rt := newTestPool(t, 4)
	if _, err := p.Start(context.Background(), job.Spec{ID: "j-small", FuncCPU: 1}, 3); err != nil {
		t.Fatal(err)
	}
	want := []string{"j-small:1", "j-small:1", "j-small:1", ":1"}
	waitFor(t, "three workers on the job and one warm", func() bool { return slices.Equal(rt.live(), want) })
}

func TestPoolRestartsACrashedWorkerOnItsJob(t *testing.T) {
	p, rt := newTestPool(t, 2)
	if _, err := p.Start(context.Background(), job.Spec{ID: "j-1", FuncCPU: 1}, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both workers on the job", func() bool { return slices.Equal(rt.live(), []string{"j-1:1", "j-1:1"}) })
	rt.mu.Lock()
	victim := rt.workers[0]
	rt.mu.Unlock()
	victim.Kill()
	waitFor(t, "a new worker on the job in the crashed one's slot", func() bool {
		rt.mu.Lock()
		replaced := rt.workers[0] != victim
		rt.mu.Unlock()
		return replaced && slices.Equal(rt.live(), []string{"j-1:1", "j-1:1"})
	})
}

func TestPoolFitsFuncRAM(t *testing.T) {
	p, rt := newTestPool(t, 4) // 4 CPUs, 4 GB
	if _, err := p.Start(context.Background(), job.Spec{ID: "j-mem", FuncCPU: 1, FuncRAMMB: 3 * 1024}, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one worker: only one 3 GB call fits in 4 GB", func() bool { return slices.Equal(rt.live(), []string{"j-mem:1"}) })
}

func TestPoolExportsItsWorkersStats(t *testing.T) {
	p, _ := newTestPool(t, 2)
	reg := prometheus.NewRegistry()
	p.work.register(reg)
	if _, err := p.Start(context.Background(), job.Spec{ID: "j-stats", FuncCPU: 1}, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both workers busy", func() bool { id, _, busy := p.state(); return id == "j-stats" && busy == 2 })
	// Each of the two workers reported 3 results, 1 of them failed, 1 claim and 2 chunks.
	want := map[string]float64{
		`burla_worker_inputs_total{outcome="done"}`:   4,
		`burla_worker_inputs_total{outcome="failed"}`: 2,
		`burla_worker_claim_seconds_count`:            2,
		`burla_worker_chunk_seconds_count`:            4,
	}
	waitFor(t, "the workers' stats in the node's metrics", func() bool {
		got := gathered(t, reg)
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	p.Stop(context.Background(), "j-stats")
	waitFor(t, "no worker busy after the job", func() bool { _, _, busy := p.state(); return busy == 0 })
}

// gathered flattens reg's counters and histogram counts into name{labels} → value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// A job with dynamic resources starts with a worker per CPU, each with an equal
// share of the node's memory; each time a call runs out of memory the node halves
// its workers and gives the rest the memory. A report sent before the last halving
// changes nothing, and a job with fixed resources is never lowered.
func TestPoolLowersDynamicJobOnOutOfMemory(t *testing.T) {
	p, rt := newTestPool(t, 4) // 4 CPUs, 4 GB
	spec := job.Spec{ID: "j-dyn", Binary: strings.Repeat("a", 64), FuncCPU: 1, Dynamic: true}
	if _, err := p.Start(context.Background(), spec, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four workers on the job", func() bool { return slices.Equal(rt.live(), []string{"j-dyn:1", "j-dyn:1", "j-dyn:1", "j-dyn:1"}) })
	if c, _ := rt.worker(0).last(wire.OpRun); c.Workers != 4 || c.MemoryMB != 1024 {
		t.Fatalf("run command says %d workers with %d MB; want 4 with 1024", c.Workers, c.MemoryMB)
	}
	oom := func(slot, workers int) {
		rt.worker(slot).report(wire.Event{Type: wire.EventOOM, Job: spec.ID, Index: 7, Workers: workers, Message: "out of memory"})
	}
	oom(2, 4)
	waitFor(t, "two workers on the job", func() bool { return slices.Equal(rt.live(), []string{"j-dyn:1", "j-dyn:1"}) })
	for _, slot := range []int{0, 1} {
		w := rt.worker(slot)
		waitFor(t, "the kept workers resized", func() bool {
			c, ok := w.last(wire.OpResize)
			w.mu.Lock()
			defer w.mu.Unlock()
			return ok && c.Workers == 2 && c.MemoryMB == 2048 && w.memoryMB == 2048
		})
	}
	oom(3, 4) // stale: sent before the halving
	oom(0, 2)
	waitFor(t, "one worker on the job", func() bool { return slices.Equal(rt.live(), []string{"j-dyn:1"}) })
	waitFor(t, "the last worker told it has the node's 4096 MB", func() bool {
		c, _ := rt.worker(1).last(wire.OpResize)
		return c.Workers == 1 && c.MemoryMB == 4096
	})
	oom(1, 1) // alone: the worker fails the call itself; nothing to lower
	time.Sleep(50 * time.Millisecond)
	if got := rt.live(); !slices.Equal(got, []string{"j-dyn:1"}) {
		t.Errorf("workers %v after a report with one worker; want the one kept", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.lowered)
	if n := gathered(t, reg)["burla_node_concurrency_lowered_total"]; n != 2 {
		t.Errorf("burla_node_concurrency_lowered_total = %v; want 2", n)
	}
	p.Stop(context.Background(), spec.ID)
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four fresh workers after the job", func() bool { return slices.Equal(rt.live(), []string{":1", ":1", ":1", ":1"}) })

	fixed := job.Spec{ID: "j-fixed", Binary: strings.Repeat("a", 64), FuncCPU: 1}
	if _, err := p.Start(context.Background(), fixed, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four workers on the fixed job", func() bool { return len(rt.live()) == 4 && rt.live()[0] == "j-fixed:1" })
	if c, _ := rt.worker(0).last(wire.OpRun); c.MemoryMB != 0 {
		t.Errorf("a fixed job's run command gives the worker %d MB; want none of its own", c.MemoryMB)
	}
	rt.worker(0).report(wire.Event{Type: wire.EventOOM, Job: fixed.ID, Workers: 4})
	time.Sleep(50 * time.Millisecond)
	if n := len(rt.live()); n != 4 {
		t.Errorf("%d workers after an oom report on a fixed job; want 4", n)
	}
}

// A job in an environment the node keeps warm runs on that environment's warm
// workers as they are, and alone: the node's other workers are stopped, and the
// job is given to its workers only once they have exited, however slowly they do.
func TestPoolRunsAJobInAWarmEnvironmentAlone(t *testing.T) {
	p, rt := newEnvTestPool(t, 2, []string{"env"}) // slots 0 and 1 default, 2 and 3 env
	warm := []*fakeWorker{rt.worker(2), rt.worker(3)}
	linger := make(chan struct{})
	rt.mu.Lock()
	rt.linger = linger
	rt.mu.Unlock()
	spec := job.Spec{ID: job.NewID(time.Now(), "acme"), Image: "env", Command: []string{"sh"}, FuncCPU: 1}
	started := make(chan error, 1)
	go func() {
		_, err := p.Start(context.Background(), spec, 2)
		started <- err
	}()
	// The default workers are told to stop, and linger.
	waitFor(t, "the default workers stopping", func() bool {
		_, warm, _ := p.state()
		return warm == 2
	})
	rt.mu.Lock()
	close(linger)
	rt.linger = nil
	rt.mu.Unlock()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return once the stopped workers had exited")
	}
	waitFor(t, "the environment's two workers on the job, no other", func() bool {
		return slices.Equal(rt.live(), []string{spec.ID + ":1", spec.ID + ":1"})
	})
	rt.mu.Lock()
	order := slices.Clone(rt.order)
	rt.mu.Unlock()
	firstRun := slices.IndexFunc(order, func(e string) bool { return strings.HasPrefix(e, "run ") })
	if !slices.Contains(order[:max(firstRun, 0)], "exit 0") || !slices.Contains(order[:max(firstRun, 0)], "exit 1") {
		t.Errorf("events %v; want both default workers gone before the job runs", order)
	}
	for i, w := range warm {
		if rt.worker(2+i) != w || !strings.HasPrefix(strings.Join(w.commands(), ","), "run:"+spec.ID) {
			t.Errorf("slot %d: the job ran in worker %v sent %v; want the warm one", 2+i, rt.worker(2+i) != w, w.commands())
		}
	}
	if got := rt.starts(); got != 4 {
		t.Errorf("%d workers started; want the 4 warm ones, none during the job", got)
	}
	p.Stop(context.Background(), spec.ID)
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four fresh workers after the job", func() bool { return len(rt.live()) == 4 })
}

// A worker still starting in a slot a job stops (the node is resetting after the
// last job) is not left to come up beside the job: its start is cancelled, and
// the job starts at once.
func TestPoolCancelsAStartInASlotAJobStops(t *testing.T) {
	p, rt := newEnvTestPool(t, 2, []string{"env"})
	first := job.Spec{ID: job.NewID(time.Now(), "acme"), Image: "env", Command: []string{"sh"}, FuncCPU: 1}
	if _, err := p.Start(context.Background(), first, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first job on the environment's workers", func() bool { _, _, busy := p.state(); return busy == 2 })
	rt.mu.Lock()
	rt.hold = map[int]bool{0: true, 1: true}
	rt.mu.Unlock()
	p.Stop(context.Background(), first.ID)
	waitFor(t, "the default workers starting again", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return rt.starting == 2
	})
	waitFor(t, "the environment's workers replaced", func() bool {
		_, warm, _ := p.state()
		return warm == 2 && !rt.worker(2).served() && !rt.worker(3).served()
	})
	next := job.Spec{ID: job.NewID(time.Now(), "acme"), Image: "env", Command: []string{"sh"}, FuncCPU: 1}
	started := make(chan error, 1)
	go func() {
		_, err := p.Start(context.Background(), next, 2)
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start waited for workers starting in slots it stops")
	}
	rt.mu.Lock()
	aborted := rt.aborted
	rt.hold = nil
	rt.mu.Unlock()
	if aborted != 2 {
		t.Errorf("%d starts cancelled; want the 2 default workers'", aborted)
	}
	waitFor(t, "the next job on the environment's workers", func() bool { _, _, busy := p.state(); return busy == 2 })
	waitFor(t, "the environment's two workers on the job, no other", func() bool {
		return slices.Equal(rt.live(), []string{next.ID + ":1", next.ID + ":1"})
	})
	if got := rt.starts(); got != 4+2 {
		t.Errorf("%d workers started; want 4 at first and the environment's 2 after the first job", got)
	}
	p.Stop(context.Background(), next.ID)
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "four fresh workers after the job", func() bool { return len(rt.live()) == 4 })
}

// served reports whether the worker was given a job.
func (w *fakeWorker) served() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.cmds, func(c wire.Command) bool { return c.Op == wire.OpRun })
}
