package burla

import (
	"fmt"
	"time"
)

var spinFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// startSpinner draws a status line on stderr until the returned function is called.
func startSpinner[Out any](j *Job[Out]) (stop func()) {
	if !j.o.spinnerOn() {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				j.logMu.Lock()
				clearSpinner(j)
				j.logMu.Unlock()
				return
			case <-t.C:
				j.logMu.Lock()
				fmt.Fprintf(j.o.stderr, "\r\x1b[K%s burla %s: %d/%d done, %s", spinFrames[i%len(spinFrames)], j.id,
					j.done.Load(), j.inputs, time.Since(j.started).Round(100*time.Millisecond))
				j.logMu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// clearSpinner erases the status line; the caller holds j.logMu.
func clearSpinner[Out any](j *Job[Out]) {
	if j.o.spinnerOn() {
		fmt.Fprint(j.o.stderr, "\r\x1b[K")
	}
}
