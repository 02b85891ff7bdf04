package burla

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

// The progress display: on a terminal, one line redrawn in place,
//
//	⠹ burla j-0123…: running on 2 nodes, 4 containers [██████░░░░░░] 512/1000  1.2k/s  ETA 3s
//	⠹ burla j-0123…: waiting 42s: 3 nodes booting [░░░░░░░░░░░░] 0/1000  42s
//
// and elsewhere (a log file, CI) a plain line every plainEvery. Both read the job's
// state from Temporal, its queue and its nodes from the store once a second, off
// the path that delivers results; while no call runs, the line says what the job
// waits for (status.Diagnose), asking the cluster only then. Before the job exists,
// Submit shows what it waits for itself: the program uploading, the environment
// building.

var spinFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

const (
	drawEvery  = 100 * time.Millisecond
	pollEvery  = time.Second
	plainEvery = 10 * time.Second
	barWidth   = 24
)

// progressMode is how a job shows its progress.
type progressMode int

const (
	progressOff progressMode = iota
	progressBar
	progressLines
)

func (o *options) progressMode() progressMode {
	switch {
	case o.spinner != nil && !*o.spinner:
		return progressOff
	case o.spinner != nil || isTerminal(o.stderr):
		return progressBar
	}
	return progressLines
}

// snapshot is what the display shows.
type snapshot struct {
	id      string
	state   job.State // "" until Temporal has been asked
	nodes   int
	busy    int
	waiting *status.Waiting // what the job waits for, while it runs no call
	done    int64
	inputs  int
	rate    float64 // results per second over the last few seconds
	elapsed time.Duration
	now     time.Time
}

// phase says in words what the job is doing.
func (s snapshot) phase() string {
	switch {
	case s.state == "":
		return "starting"
	case s.state.Terminal():
		return strings.ToLower(string(s.state))
	case s.waiting != nil:
		return s.waiting.Text(s.now)
	case s.nodes == 0:
		return "running" // on nodes whose records this client cannot read
	}
	return fmt.Sprintf("running on %s, %s", plural(s.nodes, "node"), plural(s.busy, "container"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// eta is how long the rest should take at the current rate, or "" if unknown.
func (s snapshot) eta() string {
	left := int64(s.inputs) - s.done
	if s.rate <= 0 || left <= 0 {
		return ""
	}
	d := time.Duration(float64(left) / s.rate * float64(time.Second))
	return "ETA " + shortDuration(d)
}

func shortDuration(d time.Duration) string { return status.ShortDuration(d) }

func rateString(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM/s", r/1e6)
	case r >= 1e4:
		return fmt.Sprintf("%.0fk/s", r/1e3)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk/s", r/1e3)
	case r >= 10:
		return fmt.Sprintf("%.0f/s", r)
	}
	return fmt.Sprintf("%.1f/s", r)
}

// bar is the terminal line, without its spinner frame.
func (s snapshot) bar() string {
	filled := 0
	if s.inputs > 0 {
		filled = int(int64(barWidth) * s.done / int64(s.inputs))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "burla %s: %s [%s%s] %d/%d", s.id, s.phase(),
		strings.Repeat("█", filled), strings.Repeat("░", barWidth-filled), s.done, s.inputs)
	if s.done > 0 {
		fmt.Fprintf(&b, "  %s", rateString(s.rate))
	}
	if eta := s.eta(); eta != "" {
		fmt.Fprintf(&b, "  %s", eta)
	}
	fmt.Fprintf(&b, "  %s", shortDuration(s.elapsed))
	return b.String()
}

// line is the plain periodic line.
func (s snapshot) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "burla %s: %s, %d/%d done", s.id, s.phase(), s.done, s.inputs)
	if s.inputs > 0 {
		fmt.Fprintf(&b, " (%d%%)", 100*s.done/int64(s.inputs))
	}
	if s.done > 0 {
		fmt.Fprintf(&b, ", %s", rateString(s.rate))
	}
	if eta := s.eta(); eta != "" {
		fmt.Fprintf(&b, ", %s", eta)
	}
	fmt.Fprintf(&b, ", %s elapsed", shortDuration(s.elapsed))
	return b.String()
}

// rateWindow turns (time, done) samples into a rate over about the last five seconds.
type rateWindow struct {
	at   []time.Time
	done []int64
}

func (w *rateWindow) add(t time.Time, done int64) float64 {
	w.at = append(w.at, t)
	w.done = append(w.done, done)
	for len(w.at) > 2 && t.Sub(w.at[1]) >= 5*time.Second {
		w.at, w.done = w.at[1:], w.done[1:]
	}
	dt := t.Sub(w.at[0]).Seconds()
	if dt < 0.2 {
		return 0
	}
	return float64(done-w.done[0]) / dt
}

// progress is what the poller last learnt about a job.
type progress struct {
	mu      sync.Mutex
	state   job.State
	nodes   int
	busy    int
	waiting *status.Waiting
}

// startProgress shows j's progress on its stderr until the returned function is
// called, which erases the bar.
func startProgress[Out any](j *Job[Out]) (stop func()) {
	mode := j.o.progressMode()
	if mode == progressOff {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	p := &progress{}
	wg.Add(2)
	poll := pollEvery
	if mode == progressLines {
		poll = plainEvery / 2 // what a line shows is at most this old
	}
	go func() { defer wg.Done(); pollProgress(ctx, j, p, poll) }()
	go func() { defer wg.Done(); drawProgress(ctx, j, p, mode) }()
	return func() {
		cancel()
		wg.Wait()
	}
}

// pollProgress keeps p fresh: the job's state from Temporal's record of it, the
// nodes working on it from their records in the store and, while it runs no call,
// what it waits for.
func pollProgress[Out any](ctx context.Context, j *Job[Out], p *progress, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	growth := uploadGrowth{changed: j.started}
	for {
		qctx, cancel := context.WithTimeout(ctx, min(every, 2*time.Second))
		sj, nodes, busy, waiting := j.look(qctx, &growth)
		cancel()
		p.mu.Lock()
		if sj.State != "" {
			p.state = sj.State
		}
		p.nodes, p.busy, p.waiting = len(nodes), busy, waiting
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// look reads the job's state from Temporal's record of it, the nodes working on
// it from their records in the store and, while it runs no call, what it waits for.
func (j *Job[Out]) look(qctx context.Context, growth *uploadGrowth) (sj status.Job, nodes []status.JobNode, busy int, waiting *status.Waiting) {
	sj = status.Job{ID: j.id, Inputs: j.inputs, Started: j.started}
	if resp, err := j.c.tc.DescribeWorkflowExecution(qctx, j.id, ""); err == nil {
		info := resp.GetWorkflowExecutionInfo()
		sj.State = status.StateOf(info)
		if st := info.GetStartTime(); st != nil {
			sj.Started = st.AsTime()
		}
	}
	var records []store.Node
	if rs, err := j.c.st.ListNodes(qctx); err == nil {
		records = rs
		nodes = status.JobNodes(records, j.id)
	}
	for _, n := range nodes {
		busy += n.Busy
	}
	if sj.State != "" && !sj.State.Terminal() {
		if pr, err := j.c.st.Progress(qctx, j.id); err == nil {
			sj.Progress = status.ProgressOf(pr)
		}
		now := time.Now()
		e := status.Evidence{Job: sj, Records: records, Viewer: j.c.viewer()}
		if sj.Progress != nil && !sj.Progress.Sealed {
			e.Upload = j.uploadRecord(qctx, growth, now)
		}
		waiting = status.Investigate(qctx, j.c.clusterReader(), "", e, now)
	}
	return sj, nodes, busy, waiting
}

// uploadGrowth follows a count of inputs written: when it last grew.
type uploadGrowth struct {
	last    int64
	changed time.Time
}

func (g *uploadGrowth) observe(n int64, now time.Time) time.Time {
	if g.changed.IsZero() || n != g.last {
		g.last, g.changed = n, now
	}
	return g.changed
}

// uploadRecord is the upload of the job's inputs while they are still being
// written: this client's own, or, for a job it attached to, the record its
// uploading client keeps in the store.
func (j *Job[Out]) uploadRecord(ctx context.Context, g *uploadGrowth, now time.Time) *store.Upload {
	if n := j.uploaded.Load(); n < int64(j.inputs) {
		return &store.Upload{Inputs: j.inputs, Uploaded: int(n), Started: j.started, Updated: g.observe(n, now)}
	}
	if us, ok := j.c.st.(store.Uploads); ok {
		if u, err := us.Upload(ctx, j.id); err == nil {
			return &u
		}
	}
	return nil
}

// viewer is whose job IDs this connection may see named (status.Evidence.Viewer).
func (c *Cluster) viewer() string {
	if c.system || c.cfg.APIKey == "" {
		return status.AllTenants
	}
	return c.tenant
}

// clusterReader is the client that may ask the ClusterWorkflow for its state, or
// nil for a tenant's key, which the cluster refuses (each refusal is logged).
func (c *Cluster) clusterReader() client.Client {
	if c.cfg.APIKey != "" && !c.system {
		return nil
	}
	return c.tc
}

func drawProgress[Out any](ctx context.Context, j *Job[Out], p *progress, mode progressMode) {
	every := drawEvery
	if mode == progressLines {
		every = plainEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var window rateWindow
	snap := func() snapshot {
		now := time.Now()
		done := j.done.Load()
		p.mu.Lock()
		defer p.mu.Unlock()
		return snapshot{id: j.id, state: p.state, nodes: p.nodes, busy: p.busy, waiting: p.waiting,
			done: done, inputs: j.inputs, rate: window.add(now, done), elapsed: now.Sub(j.started), now: now}
	}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			if mode == progressBar {
				j.logMu.Lock()
				clearSpinner(j)
				j.logMu.Unlock()
			}
			return
		case <-t.C:
		}
		s := snap()
		j.logMu.Lock()
		if mode == progressBar {
			fmt.Fprintf(j.o.stderr, "\r\x1b[K%s %s", spinFrames[i%len(spinFrames)], s.bar())
		} else {
			fmt.Fprintln(j.o.stderr, s.line())
		}
		j.logMu.Unlock()
	}
}

// clearSpinner erases the progress bar before other output; the caller holds
// j.logMu. The bar is drawn again on its next tick.
func clearSpinner[Out any](j *Job[Out]) {
	if j.o.progressMode() == progressBar {
		fmt.Fprint(j.o.stderr, "\r\x1b[K")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// preparing shows what Submit waits for before the job exists: its program
// uploading, its environment building. A step shorter than a redraw shows nothing.
type preparing struct {
	mu   sync.Mutex
	w    *status.Waiting
	once sync.Once
	halt func()
}

// startPreparing starts showing Submit's steps on o's stderr, as the job's
// progress will be shown; stop ends it and erases the line.
func startPreparing(o *options) *preparing {
	p := &preparing{halt: func() {}}
	mode := o.progressMode()
	if mode == progressOff {
		return p
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.draw(ctx, o.stderr, mode) }()
	p.halt = func() { cancel(); <-done }
	return p
}

func (p *preparing) stop() { p.once.Do(p.halt) }

func (p *preparing) set(r status.Reason, detail string) {
	p.mu.Lock()
	p.w = &status.Waiting{Reason: r, Detail: detail, Since: time.Now()}
	p.mu.Unlock()
}

// uploadingProgram says the program at path is being put in the cluster's blob
// store (if it is not there yet).
func (p *preparing) uploadingProgram(path string) {
	detail := "uploading the program"
	if fi, err := os.Stat(path); err == nil {
		detail += fmt.Sprintf(" (%.1f MB)", float64(fi.Size())/(1<<20))
	}
	p.set(status.WaitUploadingBinary, detail)
}

// buildingProgram says the program is being built for the nodes' platform (or
// its earlier build found).
func (p *preparing) buildingProgram(target platform) {
	p.set(status.WaitBuildingProgram, "building the program for "+target.String())
}

// buildingEnv says the job's environment is being prepared: the program inspected
// and, for a job with an image, the image built.
func (p *preparing) buildingEnv(image string) {
	detail := "preparing the program's environment"
	if image != "" {
		detail = "building the environment from image " + image
	}
	p.set(status.WaitBuildingEnv, detail)
}

func (p *preparing) draw(ctx context.Context, w io.Writer, mode progressMode) {
	every := drawEvery
	if mode == progressLines {
		every = plainEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	drawn := false
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			if drawn && mode == progressBar {
				fmt.Fprint(w, "\r\x1b[K")
			}
			return
		case <-t.C:
		}
		p.mu.Lock()
		wt := p.w
		p.mu.Unlock()
		if wt == nil {
			continue
		}
		if mode == progressBar {
			fmt.Fprintf(w, "\r\x1b[K%s burla: %s", spinFrames[i%len(spinFrames)], wt.Text(time.Now()))
		} else {
			fmt.Fprintf(w, "burla: %s\n", wt.Text(time.Now()))
		}
		drawn = true
	}
}

// recordEvery is how often, at most, a client records its upload's progress in
// the store.
const recordEvery = time.Second

// recordUpload keeps the job's store.Upload record while its inputs upload, so that
// `burla jobs show` and the dashboard can say the job waits for its client, until
// the returned function is called. An upload done within recordEvery records
// nothing (the queue's seal says it is done); a longer one is recorded every
// recordEvery while it grows.
func recordUpload(ctx context.Context, st store.Backend, jobID string, inputs int, uploaded *atomic.Int64) (stop func()) {
	us, ok := st.(store.Uploads)
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	started := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(recordEvery)
		defer t.Stop()
		g := uploadGrowth{changed: started}
		written := int64(-1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n := uploaded.Load()
			updated := g.observe(n, time.Now())
			if n == written {
				continue
			}
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			err := us.PutUpload(wctx, jobID, store.Upload{Inputs: inputs, Uploaded: int(n), Started: started, Updated: updated})
			wcancel()
			if err == nil {
				written = n
			} else if errors.Is(err, context.Canceled) {
				return
			} // else: retried on the next tick; the record is advice, not state
		}
	}()
	return func() { cancel(); <-done }
}
