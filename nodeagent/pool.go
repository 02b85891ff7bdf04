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
	"go.temporal.io/sdk/temporal"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/names"
	"github.com/burla-temporal/burla/runtime"
)

var _ activities.Runner = (*pool)(nil)

// pool keeps one prewarmed container worker per slot, in its runtime (a process or a
// container), and restarts any that dies. A slot on a job keeps the
// job across its worker's restarts.
type pool struct {
	rt     runtime.Runtime
	spec   runtime.WorkerSpec // what every worker gets, but its slot and argv
	argv   []string           // how to start a worker
	log    *slog.Logger
	binary func(ctx context.Context, tenant, digest string) (string, error)

	restarts prometheus.Counter
	work     *workMetrics
	cpus     int // the node's; there are cpus slots per environment

	mu    sync.Mutex
	slots []*slot
	run   *assignment // the job the pool is on, if any

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
	// func_cpu needs fewer workers; closing it lets keep start the worker again.
	parked chan struct{}
	// last is the program the slot's last job ran; a fresh worker on an idle slot
	// starts it ahead of the next job (containerworker.OpWarm).
	last string
}

type assignment struct {
	spec   job.Spec
	binary string
	slots  []int
	errs   chan error
	closed bool
}

// newPool makes a pool of cpus slots for the node's default environment and cpus
// more for each of envs (images, kept warm for jobs that run in them).
func newPool(rt runtime.Runtime, spec runtime.WorkerSpec, argv []string, cpus int, envs []string, log *slog.Logger, binary func(context.Context, string, string) (string, error)) *pool {
	p := &pool{rt: rt, spec: spec, argv: argv, log: log, binary: binary, cpus: cpus,
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_node_worker_restarts_total", Help: "Container workers restarted after they exited."}),
		work:     newWorkMetrics(), changed: make(chan struct{}, 1)}
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
		w, err := p.startWorker(ctx, s)
		if err != nil {
			p.log.Warn("could not start container worker", "slot", s.i, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		p.mu.Lock()
		s.w, s.busy = w, ""
		a := p.run
		switch {
		case a != nil && contains(a.slots, s.i):
			p.assign(s, a) // a restarted worker goes back to its slot's job
		case s.last != "":
			if err := w.enc.Encode(containerworker.Command{Op: containerworker.OpWarm, Binary: s.last}); err != nil {
				p.log.Warn("could not prewarm program", "slot", s.i, "error", err)
			}
		}
		p.mu.Unlock()
		if a != nil && contains(a.slots, s.i) {
			p.resize(ctx, w, a)
		}
		<-w.exited
		p.mu.Lock()
		s.w, s.busy = nil, ""
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		retired, parked := w.retired, s.parked
		p.mu.Unlock()
		if ctx.Err() == nil && !retired {
			p.restarts.Inc()
			p.log.Warn("container worker exited; restarting it", "slot", s.i, "status", w.status())
		}
		if parked != nil {
			select {
			case <-parked:
			case <-ctx.Done():
			}
		}
	}
}

// workerProc is one running container worker.
type workerProc struct {
	rw     runtime.Worker
	stdin  io.WriteCloser
	enc    *json.Encoder
	exited chan struct{}
	err    error
	// retired is set when the pool ends the worker on purpose (a reset); p.mu guards it.
	retired bool
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
	}
	p.mu.Unlock()
	spec.Argv = append(slices.Clone(p.argv), "--slot", fmt.Sprint(s.i))
	rw, err := p.rt.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	w := &workerProc{rw: rw, stdin: rw.Stdin(), enc: json.NewEncoder(rw.Stdin()), exited: make(chan struct{})}
	events := bufio.NewScanner(rw.Stdout())
	events.Buffer(make([]byte, 64<<10), 1<<20)
	ready := make(chan bool, 1)
	go func() {
		defer close(w.exited)
		first := true
		for events.Scan() {
			var e containerworker.Event
			if err := json.Unmarshal(events.Bytes(), &e); err != nil {
				p.log.Warn("bad event from container worker", "slot", s.i, "error", err)
				continue
			}
			if first {
				first = false
				ready <- e.Type == containerworker.EventReady
				continue
			}
			if e.Type == containerworker.EventStats {
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
func (p *pool) event(s *slot, w *workerProc, e containerworker.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.w != w || s.busy != e.Job {
		return // a report about a job the slot has left
	}
	s.busy = ""
	p.touch()
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	if e.Type != containerworker.EventFailed {
		return
	}
	a := p.run
	if a == nil || a.spec.ID != e.Job || a.closed {
		return
	}
	var err error
	switch e.ErrType {
	case names.ErrUserError:
		err = activities.UserError(e.Message, e.Index)
	case names.ErrUnknownFunction, names.ErrBadBinary:
		err = temporal.NewNonRetryableApplicationError(e.Message, e.ErrType, nil)
	default:
		err = fmt.Errorf("worker %d failed on job %s: %s", s.i, e.Job, e.Message)
	}
	select {
	case a.errs <- err:
	default:
	}
}

// assign sends a's job to slot s; p.mu is held.
func (p *pool) assign(s *slot, a *assignment) {
	if s.w == nil {
		return // keep will assign it once the worker is back
	}
	spec := a.spec
	if err := s.w.enc.Encode(containerworker.Command{Op: containerworker.OpRun, Spec: &spec, Binary: a.binary}); err != nil {
		p.log.Warn("could not send job to container worker", "slot", s.i, "job", spec.ID, "error", err)
		return
	}
	s.busy = spec.ID
	p.touch()
	s.idle = make(chan struct{})
	s.last = a.binary
}

// Start implements activities.Runner.
func (p *pool) Start(ctx context.Context, spec job.Spec, n int) (<-chan error, error) {
	var bin string
	if len(spec.Command) == 0 { // a command job ships no program
		var err error
		if bin, err = p.binary(ctx, job.TenantOf(spec.ID), spec.Binary); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil {
		return nil, fmt.Errorf("node is busy with job %s", p.run.spec.ID)
	}
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
	// A node keeps floor(CPUs/func_cpu) workers for a job, fewer if func_ram does
	// not fit that many; the job uses n of them.
	keep := p.cpus / max(spec.FuncCPU, 1)
	if nodeRAM := p.spec.MemoryMB * p.cpus; nodeRAM > 0 && spec.FuncRAMMB > 0 {
		keep = min(keep, nodeRAM/spec.FuncRAMMB)
	}
	keep = max(keep, 1)
	n = max(1, min(n, keep))
	a := &assignment{spec: spec, binary: bin, errs: make(chan error, len(p.slots)+1)}
	var resize []*workerProc
	for _, s := range mine[:n] {
		a.slots = append(a.slots, s.i)
		if s.parked != nil {
			close(s.parked) // keep starts it, and gives it to the job
			s.parked = nil
		}
		if restart && s.w != nil {
			// The job runs in its own image: the warm worker makes way for one
			// started from it, which keep gives to the job.
			s.w.retired = true
			s.w.stdin.Close()
			continue
		}
		p.assign(s, a)
		if s.w != nil {
			resize = append(resize, s.w)
		}
	}
	// Workers beyond what the job's func_cpu leaves room for, and those of other
	// environments, are stopped until the node is reset, so that the job's workers
	// get the node's CPUs.
	for _, s := range append(mine[keep:], others...) {
		if s.parked == nil {
			s.parked = make(chan struct{})
		}
		if s.w != nil {
			s.w.retired = true
			s.w.stdin.Close()
		}
	}
	p.run = a
	for _, w := range resize {
		p.resize(ctx, w, a)
	}
	return a.errs, nil
}

// resize gives a worker on a job the job's share of the node.
func (p *pool) resize(ctx context.Context, w *workerProc, a *assignment) {
	cpus := float64(max(a.spec.FuncCPU, 1))
	if err := w.rw.Resize(ctx, cpus, a.spec.FuncRAMMB); err != nil {
		p.log.Warn("could not resize worker", "job", a.spec.ID, "error", err)
	}
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
		if err := s.w.enc.Encode(containerworker.Command{Op: containerworker.OpStop}); err != nil {
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
	a.closed = true
	close(a.errs)
	p.run = nil
	p.mu.Unlock()
}

// size is the number of workers the pool keeps warm: one per CPU per environment.
func (p *pool) size() int { return len(p.slots) }

// state reports the pool's job, how many workers are warm, and how many of them
// are running the job.
func (p *pool) state() (jobID string, warm, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.w != nil {
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

// Reset implements activities.Runner: every worker is restarted, so that nothing of
// the last job survives in them, and Reset returns once all are warm again.
func (p *pool) Reset(ctx context.Context) error {
	p.mu.Lock()
	if p.run != nil {
		p.mu.Unlock()
		return fmt.Errorf("reset while on job %s", p.run.spec.ID)
	}
	var old []*workerProc
	for _, s := range p.slots {
		if s.parked != nil {
			close(s.parked)
			s.parked = nil
		}
		if s.w != nil {
			old = append(old, s.w)
			s.w.retired = true
			s.w.stdin.Close() // a worker exits when its stdin closes; keep restarts it
		}
	}
	p.mu.Unlock()
	for _, w := range old {
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			w.rw.Kill()
			<-w.exited
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		p.mu.Lock()
		warm := 0
		for _, s := range p.slots {
			if s.w != nil && !slices.Contains(old, s.w) {
				warm++
			}
		}
		p.mu.Unlock()
		if warm == len(p.slots) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
