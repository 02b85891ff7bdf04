package burla

import (
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
)

func TestProgressSaysWhatTheJobIsDoing(t *testing.T) {
	base := snapshot{id: "j-1", inputs: 1000, elapsed: 3 * time.Second}
	for _, tc := range []struct {
		s    snapshot
		want string
	}{
		{base, "starting"},
		{snap(base, func(s *snapshot) { s.state = job.StatePlacing }), "waiting for nodes"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.uploaded = 200 }), "uploading inputs (200/1000)"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.uploaded = 1000 }), "starting containers"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.uploaded = 1000; s.nodes = 2; s.busy = 4 }), "running on 2 nodes, 4 containers"},
		{snap(base, func(s *snapshot) { s.state = job.StateRunning; s.nodes = 1; s.busy = 1; s.done = 5 }), "running on 1 node, 1 container"},
		{snap(base, func(s *snapshot) { s.state = job.StateSucceeded }), "succeeded"},
	} {
		if got := tc.s.phase(); got != tc.want {
			t.Errorf("phase of %+v = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func snap(s snapshot, f func(*snapshot)) snapshot { f(&s); return s }

func TestProgressBarAndLine(t *testing.T) {
	s := snapshot{id: "j-1", state: job.StateRunning, nodes: 2, busy: 4, uploaded: 1000, done: 500, inputs: 1000, rate: 250, elapsed: 2 * time.Second}
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
