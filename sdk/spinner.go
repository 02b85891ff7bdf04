package burla

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/status"
)

// The progress display: on a terminal, one line redrawn in place,
//
//	⠹ burla j-0123…: running on 2 nodes, 4 containers [██████░░░░░░] 512/1000  1.2k/s  ETA 3s
//
// and elsewhere (a log file, CI) a plain line every plainEvery. Both read the job's
// state from Temporal and its nodes from the store once a second, off the path that
// delivers results.

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
	id       string
	state    job.State // "" until Temporal has been asked
	nodes    int
	busy     int
	uploaded int64
	done     int64
	inputs   int
	rate     float64 // results per second over the last few seconds
	elapsed  time.Duration
}

// phase says in words what the job is doing.
func (s snapshot) phase() string {
	switch {
	case s.state == "":
		return "starting"
	case s.state == job.StatePlacing:
		return "waiting for nodes"
	case s.state.Terminal():
		return strings.ToLower(string(s.state))
	case s.uploaded < int64(s.inputs) && s.done == 0 && s.nodes == 0:
		return fmt.Sprintf("uploading inputs (%d/%d)", s.uploaded, s.inputs)
	case s.nodes == 0:
		return "starting containers"
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

func shortDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

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
	mu    sync.Mutex
	state job.State
	nodes int
	busy  int
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

// pollProgress keeps p fresh: the job's state from Temporal's record of it, and the
// nodes working on it from their records in the store.
func pollProgress[Out any](ctx context.Context, j *Job[Out], p *progress, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, min(every, 2*time.Second))
		state := job.State("")
		if resp, err := j.c.tc.DescribeWorkflowExecution(qctx, j.id, ""); err == nil {
			state = status.StateOf(resp.GetWorkflowExecutionInfo())
		}
		var nodes []status.JobNode
		if records, err := j.c.st.ListNodes(qctx); err == nil {
			nodes = status.JobNodes(records, j.id)
		}
		busy := 0
		for _, n := range nodes {
			busy += n.Busy
		}
		cancel()
		p.mu.Lock()
		if state != "" {
			p.state = state
		}
		p.nodes, p.busy = len(nodes), busy
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
		return snapshot{id: j.id, state: p.state, nodes: p.nodes, busy: p.busy, uploaded: j.uploaded.Load(),
			done: done, inputs: j.inputs, rate: window.add(now, done), elapsed: now.Sub(j.started)}
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
