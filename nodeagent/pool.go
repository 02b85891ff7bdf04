package nodeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/wire"
)

var _ activities.Runner = (*pool)(nil)

// pool keeps one prewarmed container worker per slot, in its runtime (a process or a
// container), and restarts any that dies. A slot on a job keeps the
// job across its worker's restarts.
//
// A node serves one job at a time, and a worker serves at most one job: once the
// job ends, every worker that served it is retired and a fresh one (a new process
// with a new scratch directory, or a new container) takes its place, in the
// background, so that the next job, perhaps another tenant's, finds warm workers
// and nothing of the last job in them. A fresh worker may start the last job's
// program ahead of the next job (wire.OpWarm); a job of another tenant
// never runs in such a worker, but in one started fresh for it.
type pool struct {
	rt     runtime.Runtime
	spec   runtime.WorkerSpec // what every worker gets, but its slot and argv
	argv   []string           // how to start a worker
	log    *slog.Logger
	binary func(ctx context.Context, tenant, digest string) (string, error)

	restarts prometheus.Counter
	resets   prometheus.Histogram
	lowered  prometheus.Counter
	work     *workMetrics
	cpus     int // the node's; there are cpus slots per environment

	mu    sync.Mutex
	slots []*slot
	run   *assignment // the job the pool is on, if any
	// resetting is when the reset in progress began (zero if none), and resetJob
	// the job it follows ("" for one the node's workflow asked for).
	resetting time.Time
	resetJob  string
	// closed is set by close: a worker whose start was in flight then is stopped
	// as soon as keep has it.
	closed bool
	// token is the workers' latest access token for the store, if the node hands
	// them tokens (see feedTokens).
	token wire.Token

	// changed receives a value when the pool's job or a worker's busy state has
	// changed, so that the node's record can say so at once.
	changed chan struct{}
}

// touch notes that what state reports has changed.
func (p *pool) touch() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

type slot struct {
	i     int
	image string      // the environment the slot's worker is kept warm in ("" is the node's default)
	w     *workerProc // nil while (re)starting
	busy  string      // job the worker is on, per its last command and event
	idle  chan struct{}
	// parked is set while the slot's worker is stopped because a job with a larger
	// func_cpu needs fewer workers, or runs in another environment; closing it lets
	// keep start the worker again.
	parked chan struct{}
	// starting is set while keep starts the slot's worker, and closed once that
	// start has ended (s.w is then the worker, or nil if it did not start); abort
	// cancels the start, for a job that parks the slot meanwhile.
	starting chan struct{}
	abort    context.CancelFunc
	// last is the program the slot's last job ran, and lastTenant that job's
	// tenant; a fresh worker on an idle slot starts it ahead of the next job
	// (wire.OpWarm), which takes it if it is the same tenant's.
	last, lastTenant string
}

type assignment struct {
	spec   job.Spec
	binary string
	slots  []int
	// workers is how many workers the job runs on here: len(slots) once Start
	// has set them all.
	workers int
	// started is set once Start has given the job to its workers, which it does
	// only after the workers it stopped have exited; until then keep gives the job
	// to none it starts.
	started bool
	errs    chan error
	closed  bool
	// memoryMB is each worker's memory for a job with dynamic resources: the
	// node's, shared equally by the job's workers (0 where the node's is unknown).
	memoryMB int
	// granted is set on a job the pool began on its grant (Begin), ahead of its
	// activity; taken, once the activity has taken the job over (Start), or the
	// grant has lapsed or been dropped. ready is closed once start has ended,
	// with startErr if it failed.
	granted, taken bool
	ready          chan struct{}
	startErr       error
}

// newPool makes a pool of cpus slots for the node's default environment and cpus
// more for each of envs (images, kept warm for jobs that run in them).
func newPool(rt runtime.Runtime, spec runtime.WorkerSpec, argv []string, cpus int, envs []string, log *slog.Logger, binary func(context.Context, string, string) (string, error)) *pool {
	p := &pool{rt: rt, spec: spec, argv: argv, log: log, binary: binary, cpus: cpus,
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_node_worker_restarts_total", Help: "Container workers restarted after they exited."}),
		resets: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "burla_node_reset_seconds",
			Help:    "How long the node took, after a job, to replace every worker that served it with a fresh one.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		lowered: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_node_concurrency_lowered_total",
			Help: "Times the node halved the workers on a job with dynamic resources because a call ran out of memory."}),
		work: newWorkMetrics(), changed: make(chan struct{}, 1)}
	for _, image := range append([]string{""}, envs...) {
		for range cpus {
			p.slots = append(p.slots, &slot{i: len(p.slots), image: image})
		}
	}
	return p
}

// supervise keeps every slot's worker running until ctx ends.
func (p *pool) supervise(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range p.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.keep(ctx, s)
		}()
	}
	wg.Wait()
}

func (p *pool) keep(ctx context.Context, s *slot) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		p.mu.Lock()
		parked := s.parked
		if parked != nil {
			// Parked for a job: the slot starts no worker until the job ends.
			p.mu.Unlock()
			select {
			case <-parked:
			case <-ctx.Done():
			}
			continue
		}
		sctx, abort := context.WithCancel(ctx)
		starting := make(chan struct{})
		s.starting, s.abort = starting, abort
		p.mu.Unlock()
		w, err := p.startWorker(sctx, s)
		aborted := sctx.Err() != nil && ctx.Err() == nil
		abort() // (the context only bounds the start: the worker outlives it)
		p.mu.Lock()
		s.starting, s.abort = nil, nil
		if err != nil {
			close(starting)
			p.mu.Unlock()
			if aborted {
				continue // a job parked the slot while its worker started
			}
			p.log.Warn("could not start container worker", "slot", s.i, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.w, s.busy = w, ""
		p.handToken(w) // before any job: its calls' results go to the store
		close(starting)
		if p.closed {
			// close ran while it started (its start may win over ctx's end): it
			// closed the workers it found, and this was not among them.
			w.stdin.Close()
		}
		a := p.run
		onJob := a != nil && contains(a.slots, s.i)
		var cpus float64
		var mem int
		kill := false
		switch {
		case onJob && a.started:
			p.assign(s, a) // a restarted worker goes back to its slot's job
			cpus, mem = a.limits()
			onJob = s.busy == a.spec.ID // not if it was retired instead
		case onJob:
			// Start gives it the job once the workers it stops have exited.
			onJob = false
		case s.parked != nil:
			// It came up as a job parked its slot: it stops until the job ends.
			kill = p.halt(w)
		case w.image != s.image:
			// Started in a job's environment for a job that has ended since: it
			// makes way for one in the slot's own.
			p.retire(w)
		case s.last != "":
			p.prewarm(s, w)
		}
		p.resetProgress()
		p.mu.Unlock()
		if kill {
			w.rw.Kill()
		}
		if onJob {
			p.resize(ctx, w, a.spec.ID, cpus, mem)
		}
		<-w.exited
		p.mu.Lock()
		s.w, s.busy = nil, ""
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		retired := w.retired
		p.mu.Unlock()
		if ctx.Err() == nil && !retired {
			p.restarts.Inc()
			p.log.Warn("container worker exited; restarting it", "slot", s.i, "status", w.status())
		}
	}
}

// workerProc is one running container worker. p.mu guards its flags.
type workerProc struct {
	rw     runtime.Worker
	image  string // the environment it was started in
	gpus   int    // the GPUs it was started with
	stdin  io.WriteCloser
	enc    *json.Encoder
	exited chan struct{}
	err    error
	// retired is set when the pool ends the worker on purpose (a reset).
	retired bool
	// served is set once the worker is given a job: it is retired when the job ends.
	served bool
	// warmTenant is the tenant whose program the worker was told to prewarm, if any.
	warmTenant string
}

// fresh reports whether w is a worker the next job may have: one that has served
// no job and is in its slot's environment.
func (w *workerProc) fresh(s *slot) bool {
	return w != nil && !w.retired && !w.served && w.image == s.image
}

// retireWait bounds how long a retired worker has to exit before it is killed.
const retireWait = 5 * time.Second

// retire ends w on purpose: it exits when its stdin closes, or is killed after
// retireWait; keep then starts a fresh one in its slot. p.mu is held.
func (p *pool) retire(w *workerProc) {
	if w.retired {
		return
	}
	w.retired = true
	w.stdin.Close()
	go func() {
		t := time.NewTimer(retireWait)
		defer t.Stop()
		select {
		case <-w.exited:
		case <-t.C:
			w.rw.Kill()
		}
	}()
}

// halt stops w, the worker of a slot parked for a job; p.mu is held. It reports
// whether the caller is to kill w at once (outside p.mu): a worker that has served
// no job is idle and holds nothing of anyone's, and the job waits for it to be
// gone; one that served a job (not yet replaced) is retired, and ends as retire
// says.
func (p *pool) halt(w *workerProc) bool {
	if w.retired {
		return false // on its way out already
	}
	p.retire(w)
	return !w.served
}

// parkWait bounds how long a job waits for the workers it stops to exit, after
// which it starts with them still running (the Docker engine, say, is stuck).
const parkWait = retireWait

// awaitParked waits until no slot parked for the job has a worker running or
// starting: the workers Start stopped have exited, and starts in flight have been
// cancelled (or, had they won the race, their workers stopped by keep).
func (p *pool) awaitParked(ctx context.Context, jobID string) error {
	deadline := time.NewTimer(parkWait)
	defer deadline.Stop()
	began := time.Now()
	for waited := false; ; waited = true {
		var pending []<-chan struct{}
		p.mu.Lock()
		for _, s := range p.slots {
			if s.parked == nil {
				continue
			}
			switch {
			case s.w != nil:
				select {
				case <-s.w.exited: // gone; keep clears the slot
				default:
					pending = append(pending, s.w.exited)
				}
			case s.starting != nil:
				s.abort()
				pending = append(pending, s.starting)
			}
		}
		p.mu.Unlock()
		if len(pending) == 0 {
			if waited {
				p.log.Info("job waited for the workers it stopped to exit", "job", jobID, "took", time.Since(began))
			}
			return nil
		}
		for _, ch := range pending {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline.C:
				p.log.Warn("job starts while workers it stopped still run", "job", jobID, "workers", len(pending),
					"waited", time.Since(began))
				return nil
			}
		}
	}
}

// prewarm gives a fresh worker on an idle slot the slot's last program to start
// ahead of the next job; p.mu is held.
func (p *pool) prewarm(s *slot, w *workerProc) {
	path, err := w.rw.Provide(s.last)
	if err == nil {
		err = w.enc.Encode(wire.Command{Op: wire.OpWarm, Binary: path, Tenant: s.lastTenant})
	}
	if err != nil {
		p.log.Warn("could not prewarm program", "slot", s.i, "error", err)
		return
	}
	w.warmTenant = s.lastTenant
}

func (w *workerProc) status() string {
	if w.err != nil {
		return w.err.Error()
	}
	return "exited"
}

func (p *pool) startWorker(ctx context.Context, s *slot) (*workerProc, error) {
	spec := p.spec
	spec.Slot = s.i
	spec.Image = s.image
	p.mu.Lock()
	if a := p.run; a != nil && contains(a.slots, s.i) {
		spec.Image = a.spec.Image // a job's worker runs in the job's environment
		spec.GPUs = a.spec.GPUCount()
	}
	p.mu.Unlock()
	spec.Argv = append(slices.Clone(p.argv), "--slot", fmt.Sprint(s.i))
	rw, err := p.rt.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	w := &workerProc{rw: rw, image: spec.Image, gpus: spec.GPUs, stdin: rw.Stdin(), enc: json.NewEncoder(rw.Stdin()), exited: make(chan struct{})}
	events := bufio.NewScanner(rw.Stdout())
	events.Buffer(make([]byte, 64<<10), 1<<20)
	ready := make(chan bool, 1)
	go func() {
		defer close(w.exited)
		first := true
		for events.Scan() {
			var e wire.Event
			if err := json.Unmarshal(events.Bytes(), &e); err != nil {
				p.log.Warn("bad event from container worker", "slot", s.i, "error", err)
				continue
			}
			if first {
				first = false
				ready <- e.Type == wire.EventReady
				continue
			}
			if e.Type == wire.EventStats {
				p.work.add(e.Stats)
				continue
			}
			p.event(s, w, e)
		}
		if first {
			ready <- false
		}
		rw.Stdout().Close()
		<-rw.Done()
		w.err = rw.Err()
	}()
	select {
	case ok := <-ready:
		if ok {
			return w, nil
		}
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	rw.Kill()
	<-w.exited
	return nil, fmt.Errorf("container worker did not report ready: %v", w.status())
}

// event handles a worker's report.
func (p *pool) event(s *slot, w *workerProc, e wire.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.w != w || s.busy != e.Job {
		return // a report about a job the slot has left
	}
	if e.Type == wire.EventOOM {
		p.lower(s, e)
		return
	}
	s.busy = ""
	p.touch()
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	if e.Type != wire.EventFailed {
		return
	}
	a := p.run
	if a == nil || a.spec.ID != e.Job || a.closed {
		return
	}
	var err error
	switch t := control.ErrorType(e.ErrType); t {
	case control.ErrUserError:
		err = activities.UserError(e.Message, e.Index)
	case control.ErrUnknownFunction, control.ErrBadBinary:
		err = t.New(e.Message, nil)
	case control.ErrChunkFailed:
		err = t.New(e.Message, nil, e.Index)
	default:
		err = fmt.Errorf("worker %d failed on job %s: %s", s.i, e.Job, e.Message)
	}
	select {
	case a.errs <- err:
	default:
	}
}

// assign sends a's job to slot s, with the job's program, the one program of the
// node's the worker is given while it runs the job; p.mu is held.
func (p *pool) assign(s *slot, a *assignment) {
	if s.w == nil || s.w.retired {
		return // keep will assign it once a fresh worker is up
	}
	if s.w.image != a.spec.Image || s.w.gpus != a.spec.GPUCount() {
		// Started for the slot (a reset's replacement) as the job took the slot:
		// the job's calls run in the job's environment, with its GPUs. Keep
		// starts one that does, and assigns it.
		p.retire(s.w)
		return
	}
	spec := a.spec
	path, err := s.w.rw.Provide(a.binary) // a command job has none: the worker is given none
	if err != nil {
		p.log.Warn("could not give the job's program to a container worker", "slot", s.i, "job", spec.ID, "error", err)
		select {
		case a.errs <- fmt.Errorf("worker %d: %w", s.i, err):
		default:
		}
		return
	}
	if err := s.w.enc.Encode(wire.Command{Op: wire.OpRun, Spec: &spec, Binary: path,
		Workers: a.workers, MemoryMB: a.memoryMB}); err != nil {
		p.log.Warn("could not send job to container worker", "slot", s.i, "job", spec.ID, "error", err)
		return
	}
	s.w.served = true
	s.busy = spec.ID
	p.touch()
	s.idle = make(chan struct{})
	s.last, s.lastTenant = a.binary, job.TenantOf(spec.ID)
}

// Start implements activities.Runner. A job the pool began on its grant is
// taken over as it runs; one begun on another job's grant, which no activity
// has taken, is stopped first.
func (p *pool) Start(ctx context.Context, spec job.Spec, n int) (<-chan error, error) {
	p.dropGrant(ctx, spec.ID)
	p.awaitOthers(ctx, spec.ID)
	return p.start(ctx, spec, n, false)
}

// busyWait bounds how long a job's activity waits for the node to stop the last job.
const busyWait = 10 * time.Second

// awaitOthers waits, up to busyWait, until the pool is on no job but jobID's: a
// node the cluster hands from one job straight to the next may still be
// stopping the last (its activity cancelled, its workers finishing their
// calls) when the next job's activity comes.
func (p *pool) awaitOthers(ctx context.Context, jobID string) {
	deadline := time.Now().Add(busyWait)
	for {
		p.mu.Lock()
		a := p.run
		p.mu.Unlock()
		if a == nil || a.spec.ID == jobID || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// grantLapse is how long a job begun on its grant runs before its activity
// takes it over; then it is stopped.
var grantLapse = time.Minute

// Begin starts a job on the node's workers on the cluster's grant, ahead of the
// job's activity on the node, which takes it over (Start). It does nothing if
// the node is on the job already, or on another job that an activity holds.
func (p *pool) Begin(ctx context.Context, g store.Grant) {
	if err := g.Spec.Validate(); err != nil {
		p.log.Warn("grant ignored: its job's spec is invalid", "job", g.Spec.ID, "error", err)
		return
	}
	p.dropGrant(ctx, g.Spec.ID)
	p.mu.Lock()
	busy := p.run != nil
	p.mu.Unlock()
	if busy {
		return
	}
	began := time.Now()
	if _, err := p.start(ctx, g.Spec, g.Workers, true); err != nil {
		p.log.Info("could not begin a job on its grant; its activity will start it", "job", g.Spec.ID, "error", err)
		return
	}
	p.log.Debug("job begun on its grant", "job", g.Spec.ID, "workers", g.Workers, "took", time.Since(began))
}

// dropGrant stops a job the pool began on its grant if it is not jobID's and no
// activity has taken it over: its job went away before sending one (cancelled
// as it started, say), and the node is another's now.
func (p *pool) dropGrant(ctx context.Context, jobID string) {
	p.mu.Lock()
	a := p.run
	if a == nil || a.spec.ID == jobID || !a.granted || a.taken {
		p.mu.Unlock()
		return
	}
	a.taken = true
	p.mu.Unlock()
	p.log.Info("job begun on a grant that no activity followed is stopped", "job", a.spec.ID, "next_job", jobID)
	p.stopBegun(ctx, a)
}

// stopBegun stops a job begun on its grant, once its start has ended.
func (p *pool) stopBegun(ctx context.Context, a *assignment) {
	select {
	case <-a.ready:
	case <-ctx.Done():
		return
	}
	p.Stop(ctx, a.spec.ID)
}

// lapse stops a job begun on its grant that no activity has taken over.
func (p *pool) lapse(a *assignment, after time.Duration) {
	p.mu.Lock()
	if p.run != a || a.taken {
		p.mu.Unlock()
		return
	}
	a.taken = true
	p.mu.Unlock()
	p.log.Warn("no activity took over the job begun on its grant; it is stopped", "job", a.spec.ID, "after", after)
	p.stopBegun(context.Background(), a)
}

// takeOver gives the activity of a job begun on its grant the job's failures,
// once its start has ended; ok is false if that start failed.
func (p *pool) takeOver(ctx context.Context, a *assignment) (errs <-chan error, ok bool, err error) {
	select {
	case <-a.ready:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if a.startErr != nil {
		return nil, false, nil
	}
	p.log.Debug("activity took over the job begun on its grant", "job", a.spec.ID)
	return a.errs, true, nil
}

// start starts a job on n of the node's workers; granted says it is begun on
// its grant, ahead of its activity.
func (p *pool) start(ctx context.Context, spec job.Spec, n int, granted bool) (_ <-chan error, err error) {
	var bin string
	if len(spec.Command) == 0 { // a command job ships no program
		if bin, err = p.binary(ctx, job.TenantOf(spec.ID), spec.Binary); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	if a := p.run; a != nil {
		if !granted && a.granted && !a.taken && a.spec.ID == spec.ID {
			a.taken = true
			p.mu.Unlock()
			errs, ok, err := p.takeOver(ctx, a)
			if ok || err != nil {
				return errs, err
			}
			return p.start(ctx, spec, n, false) // its start failed: start it anew
		}
		defer p.mu.Unlock()
		return nil, fmt.Errorf("node is busy with job %s", a.spec.ID)
	}
	if !p.resetting.IsZero() {
		// The job takes workers as they come back; this reset is not measured.
		p.log.Info("job starts before the node's reset has finished", "job", spec.ID, "last_job", p.resetJob,
			"reset_for", time.Since(p.resetting))
		p.resetting, p.resetJob = time.Time{}, ""
	}
	tenant := job.TenantOf(spec.ID)
	// The job runs on the slots warm in its environment, or, when its environment
	// is not kept warm here, on the default slots restarted in it.
	var mine, others []*slot
	for _, s := range p.slots {
		if s.image == spec.Image {
			mine = append(mine, s)
		} else {
			others = append(others, s)
		}
	}
	restart := false
	if len(mine) == 0 {
		mine, others, restart = p.slots[:p.cpus], p.slots[p.cpus:], true
	}
	// Warm workers have no GPU: a job that needs them gets workers started with them.
	restart = restart || spec.GPU != ""
	// A node keeps floor(CPUs/func_cpu) workers for a job, fewer if func_ram does
	// not fit that many; the job uses n of them.
	keep := p.cpus / max(spec.FuncCPU, 1)
	nodeMB := p.nodeMB()
	if nodeMB > 0 && spec.FuncRAMMB > 0 {
		keep = min(keep, nodeMB/spec.FuncRAMMB)
	}
	keep = max(keep, 1)
	n = max(1, min(n, keep))
	a := &assignment{spec: spec, binary: bin, workers: n, errs: make(chan error, len(p.slots)+1),
		granted: granted, ready: make(chan struct{})}
	defer func() {
		a.startErr = err
		close(a.ready)
		if granted && err == nil {
			lapse := grantLapse
			time.AfterFunc(lapse, func() { p.lapse(a, lapse) })
		}
	}()
	if spec.Dynamic && nodeMB > 0 {
		a.memoryMB = nodeMB / n
	}
	for _, s := range mine[:n] {
		a.slots = append(a.slots, s.i)
		if s.parked != nil {
			close(s.parked) // keep starts it, and gives it to the job
			s.parked = nil
		}
		if s.w != nil && !s.w.retired && (restart || s.w.served || s.w.warmTenant != "" && s.w.warmTenant != tenant) {
			// The warm worker makes way for a fresh one, which keep gives to the
			// job: the job runs in its own image, or the worker has started
			// another tenant's program (prewarmed), whose process, and whatever it
			// wrote, must not meet this job.
			p.retire(s.w)
		}
	}
	// Workers beyond what the job's func_cpu leaves room for, and those of other
	// environments, are stopped until the node is reset, so that the job's workers
	// get the node's CPUs and memory: the job is given to its workers once they
	// have exited.
	var kill []*workerProc
	for _, s := range slices.Concat(mine[keep:], others) {
		if s.parked == nil {
			s.parked = make(chan struct{})
		}
		if s.w != nil && p.halt(s.w) {
			kill = append(kill, s.w)
		}
	}
	p.run = a
	p.mu.Unlock()
	for _, w := range kill {
		go w.rw.Kill()
	}
	err = p.awaitParked(ctx, spec.ID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != a {
		// Stop came while the job waited: it ended here before it began.
		return nil, fmt.Errorf("job %s was stopped while it started", spec.ID)
	}
	if err != nil {
		p.end(a)
		return nil, fmt.Errorf("start job %s: %w", spec.ID, err)
	}
	a.started = true
	var resize []*workerProc
	for _, i := range a.slots {
		s := p.slots[i]
		p.assign(s, a)
		if s.busy == spec.ID {
			resize = append(resize, s.w)
		}
	}
	cpus, mem := a.limits()
	for _, w := range resize {
		p.resize(ctx, w, spec.ID, cpus, mem)
	}
	return a.errs, nil
}

// limits is a worker's share of the node on the job: its CPUs and memory (0: the
// worker's own limit stays); p.mu is held.
func (a *assignment) limits() (cpus float64, memoryMB int) {
	if a.spec.Dynamic {
		return 1, a.memoryMB
	}
	return float64(max(a.spec.FuncCPU, 1)), a.spec.FuncRAMMB
}

// resize gives a worker on a job its share of the node, from a.limits.
func (p *pool) resize(ctx context.Context, w *workerProc, job string, cpus float64, memoryMB int) {
	if err := w.rw.Resize(ctx, cpus, memoryMB); err != nil {
		p.log.Warn("could not resize worker", "job", job, "error", err)
	}
}

// lower halves the workers on a job with dynamic resources after one of its
// calls ran out of memory with e.Workers workers on it (its chunk is back in the
// queue): the other half are stopped until the job ends, and the workers kept
// share the node's memory. A report from before the last lowering changes
// nothing: the call that ran out of memory then runs again with more. p.mu is held.
func (p *pool) lower(s *slot, e wire.Event) {
	a := p.run
	if a == nil || a.spec.ID != e.Job || a.closed || !a.spec.Dynamic || e.Workers != a.workers || a.workers < 2 {
		return
	}
	n := a.workers / 2
	// The worker whose call ran out of memory goes first: its program is gone.
	keep := make([]int, 0, n)
	for _, i := range a.slots {
		if i != s.i && len(keep) < n {
			keep = append(keep, i)
		}
	}
	for _, i := range a.slots {
		if contains(keep, i) {
			continue
		}
		stopped := p.slots[i]
		if stopped.parked == nil {
			stopped.parked = make(chan struct{})
		}
		if stopped.w != nil {
			p.retire(stopped.w) // its chunk goes back to the queue as it stops
		}
	}
	a.slots, a.workers = keep, n
	if a.memoryMB > 0 {
		a.memoryMB = p.nodeMB() / n
	}
	p.lowered.Inc()
	p.log.Warn("a call ran out of memory: the node runs the job on half as many workers, each with more memory",
		"job", a.spec.ID, "input", e.Index, "workers", n, "memory_mb", a.memoryMB, "error", e.Message)
	for _, i := range keep {
		k := p.slots[i]
		if k.w == nil || k.w.retired {
			continue // keep gives a restarted worker the job's new share
		}
		if err := k.w.enc.Encode(wire.Command{Op: wire.OpResize, Workers: n, MemoryMB: a.memoryMB}); err != nil {
			p.log.Warn("could not resize worker", "slot", i, "job", a.spec.ID, "error", err)
		}
		cpus, mem := a.limits()
		go p.resize(context.Background(), k.w, a.spec.ID, cpus, mem)
	}
	p.touch()
}

// Stop implements activities.Runner.
func (p *pool) Stop(ctx context.Context, jobID string) {
	p.mu.Lock()
	a := p.run
	if a == nil || a.spec.ID != jobID {
		p.mu.Unlock()
		return
	}
	var waits []chan struct{}
	var procs []*workerProc
	for _, i := range a.slots {
		s := p.slots[i]
		if s.w == nil || s.busy != jobID {
			continue
		}
		if err := s.w.enc.Encode(wire.Command{Op: wire.OpStop}); err != nil {
			continue
		}
		waits = append(waits, s.idle)
		procs = append(procs, s.w)
	}
	p.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for i, ch := range waits {
		select {
		case <-ch:
		case <-deadline:
			// A worker that does not stop is killed; keep restarts it idle.
			procs[i].rw.Kill()
		}
	}
	p.mu.Lock()
	p.end(a)
	p.mu.Unlock()
}

// end takes the pool off a's job; p.mu is held. The node is reset now, in the
// background, rather than when its workflow asks (Reset), so that the next job
// finds it warm.
func (p *pool) end(a *assignment) {
	a.closed = true
	close(a.errs)
	p.run = nil
	p.reset(a.spec.ID)
}

// reset retires every worker that is not fresh, and lets the slots parked for the
// last job start theirs again; keep replaces them. p.mu is held, and no job is on.
func (p *pool) reset(after string) {
	pending := false
	for _, s := range p.slots {
		if s.parked != nil {
			close(s.parked)
			s.parked = nil
			pending = true
		}
		if s.w != nil && !s.w.fresh(s) {
			p.retire(s.w)
			pending = true
		}
	}
	if pending && p.resetting.IsZero() {
		p.resetting, p.resetJob = time.Now(), after
	}
	p.resetProgress()
}

// resetProgress ends the reset in progress if every slot has a fresh worker, and
// records how long it took; p.mu is held.
func (p *pool) resetProgress() {
	if p.resetting.IsZero() || !p.allFresh() {
		return
	}
	took := time.Since(p.resetting)
	p.resets.Observe(took.Seconds())
	p.log.Info("node reset: every worker that served the last job replaced by a fresh one",
		"job", p.resetJob, "workers", len(p.slots), "took", took)
	p.resetting, p.resetJob = time.Time{}, ""
	p.touch()
}

// allFresh reports whether every slot has a fresh worker; p.mu is held.
func (p *pool) allFresh() bool {
	for _, s := range p.slots {
		if s.parked != nil || !s.w.fresh(s) {
			return false
		}
	}
	return true
}

// nodeMB is the node's memory, which its workers share (0: not known).
func (p *pool) nodeMB() int { return p.spec.MemoryMB * p.cpus }

// size is the number of workers the pool keeps warm: one per CPU per environment.
func (p *pool) size() int { return len(p.slots) }

// state reports the pool's job, how many workers are warm (running and not
// retired), and how many of them are running the job.
func (p *pool) state() (jobID string, warm, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.w != nil && !s.w.retired {
			warm++
			if s.busy != "" {
				busy++
			}
		}
	}
	if p.run != nil {
		jobID = p.run.spec.ID
	}
	return jobID, warm, busy
}

// close stops every worker by closing its stdin.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, s := range p.slots {
		if s.w != nil {
			s.w.stdin.Close()
		}
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Reset implements activities.Runner: every worker that is not fresh (one that
// served a job, as after a job that ended without Stop) is replaced, so that nothing
// of the last job survives in the node's workers, and Reset returns once every slot
// has a fresh worker. After Stop, which starts the same reset, it only waits.
func (p *pool) Reset(ctx context.Context) error {
	p.dropGrant(ctx, "")
	p.mu.Lock()
	if p.run != nil {
		p.mu.Unlock()
		return fmt.Errorf("reset while on job %s", p.run.spec.ID)
	}
	p.reset("")
	p.mu.Unlock()
	for {
		p.mu.Lock()
		done := p.allFresh()
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
