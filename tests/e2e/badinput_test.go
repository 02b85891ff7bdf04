package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// Functions for TestBadInputs.
var (
	// badOutput returns, for inputs 0 to 2 and 4, a value JSON cannot encode
	// faithfully: a NaN, a channel, a value whose MarshalJSON fails, an integer
	// past 2^53 in an interface value; any other input returns 1.
	badOutput = burla.Func("badOutput", func(ctx context.Context, x int) (any, error) {
		switch x {
		case 0:
			return math.NaN(), nil
		case 1:
			return make(chan int), nil
		case 2:
			return failingJSON{}, nil
		case 4:
			return map[string]any{"id": uint64(1<<53 + 1)}, nil
		}
		return 1, nil
	})
	// flood prints 100 MiB for input 1 (in 1 KiB lines) and input 2 (with no
	// newline at all), and one short line for any other input.
	flood = burla.Func("flood", func(ctx context.Context, x int) (int, error) {
		switch x {
		case 1, 2:
			c := byte('y')
			if x == 2 {
				c = 'z'
			}
			block := []byte(strings.Repeat(string(c), 64<<10))
			if x == 1 {
				for i := 1023; i < len(block); i += 1024 {
					block[i] = '\n'
				}
			}
			for range floodBytes / len(block) {
				if _, err := os.Stdout.Write(block); err != nil {
					return 0, err
				}
			}
			// An odd tail, so that the end-of-call marker need not start on a buffer
			// boundary of whoever reads this.
			os.Stdout.Write(block[:37])
		default:
			fmt.Printf("input %d says hello\n", x)
		}
		return x, nil
	})
)

const floodBytes = 100 << 20

type failingJSON struct{}

func (failingJSON) MarshalJSON() ([]byte, error) { return nil, errors.New("failingJSON refuses") }

// TestBadInputs feeds the cluster inputs and programs that are hard to handle: each
// must end in a clear error or the right result, and leave the cluster healthy.
func TestBadInputs(t *testing.T) {
	type row struct {
		name, outcome string
		took          time.Duration
	}
	var rows []row
	// run runs one case and records its outcome (the error the caller got, or what
	// fn reports) for the summary table.
	run := func(name string, fn func(t *testing.T) string) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			outcome := "stopped"
			defer func() {
				if t.Failed() {
					outcome = "FAILED: " + outcome
				}
				rows = append(rows, row{name, outcome, time.Since(start)})
			}()
			outcome = fn(t)
			checkHealthy(t)
		})
	}

	run("UnencodableOutput", func(t *testing.T) string {
		cases := []struct {
			input int
			want  string
		}{
			{0, "unsupported value: NaN"},
			{1, "unsupported type: chan int"},
			{2, "failingJSON refuses"},
			{4, "holds the integer 9007199254740993 in an interface value"},
		}
		var first string
		for _, c := range cases {
			_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), badOutput, []int{3, c.input, 3}, opts()...)
			re := remoteError(t, err)
			if re.Index != 1 || re.Kind != "encode" || !strings.Contains(err.Error(), "input 1") ||
				!strings.Contains(err.Error(), "output") || !strings.Contains(err.Error(), "cannot be encoded") ||
				!strings.Contains(err.Error(), c.want) {
				t.Errorf("output %d: error %q (%+v); want input 1's output that cannot be encoded, saying %q", c.input, err, re, c.want)
			}
			if first == "" {
				first = err.Error()
			}
		}
		return first
	})

	run("ForeignBinary", func(t *testing.T) string {
		dir := t.TempDir()
		cases := []struct {
			name string
			path string
			want []string // in the error
		}{
			{"arm64", buildTiny(t, dir, "linux", "arm64"), []string{"is built for linux/arm64", "cluster nodes run linux/amd64", "GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build"}},
			{"script", writeFile(t, dir, "script.sh", "#!/bin/sh\necho hi\n"), []string{"is a script, not a linux executable", "GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build"}},
		}
		var outcomes []string
		for _, c := range cases {
			_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1}, opts(burla.Binary(c.path))...)
			if !burla.IsKind(err, burla.KindBadBinary) {
				t.Errorf("%s: error %v; want BadBinary", c.name, err)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q; want it to say %q", c.name, err, w)
				}
			}
			outcomes = append(outcomes, strings.TrimPrefix(err.Error(), "burla: "+c.path+" "))
		}
		return strings.Join(outcomes, " / ")
	})

	run("NotABurlaProgram", func(t *testing.T) string {
		// A dynamically linked linux/amd64 program that is not a burla program: it
		// runs on the process runtime, but never says hello in worker mode.
		const prog = "/bin/true"
		if _, err := os.Stat(prog); err != nil {
			t.Skip(err)
		}
		_, err := burla.RemoteParallelMap(testCtx(t, time.Minute), square, []int{1}, opts(burla.Binary(prog))...)
		if !burla.IsKind(err, burla.KindBadBinary) || !strings.Contains(err.Error(), prog+" cannot run on the cluster") || !strings.Contains(err.Error(), "burla.Main()") {
			t.Fatalf("error %v; want BadBinary naming %s and asking whether burla.Main() is the first call in main", err, prog)
		}
		return err.Error()
	})

	run("HundredMiBOfOutput", func(t *testing.T) string {
		w := watchPeaks(t, "container-worker", "node-agent")
		var mu sync.Mutex
		perInput := map[int][]string{}
		bytesPerInput := map[int]int{}
		start := time.Now()
		// One worker, so that inputs 0 and 3 run on the worker that carried the
		// flood, before and after it.
		out, err := burla.RemoteParallelMap(testCtx(t, 2*time.Minute), flood, []int{0, 1, 2, 3},
			opts(burla.MaxParallelism(1), burla.OnLog(func(l burla.LogLine) {
				mu.Lock()
				defer mu.Unlock()
				bytesPerInput[l.Index] += len(l.Text) + 1
				if len(perInput[l.Index]) < 3 || strings.HasPrefix(l.Text, "[burla") {
					perInput[l.Index] = append(perInput[l.Index], l.Text)
				}
			}))...)
		took := time.Since(start)
		peaks := w.stop()
		if err != nil {
			t.Fatalf("flood: %v", err)
		}
		if fmt.Sprint(out) != "[0 1 2 3]" {
			t.Errorf("outputs %v; want [0 1 2 3]", out)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, i := range []int{0, 3} {
			if want := fmt.Sprintf("input %d says hello", i); len(perInput[i]) != 1 || perInput[i][0] != want {
				t.Errorf("input %d printed %q; want [%q]", i, perInput[i], want)
			}
		}
		var note string
		for _, i := range []int{1, 2} {
			lines := perInput[i]
			last := ""
			if len(lines) > 0 {
				last = lines[len(lines)-1]
			}
			if !strings.Contains(last, fmt.Sprintf("output of input %d cut after", i)) {
				t.Errorf("input %d: last line %.120q; want a note that its output was cut", i, last)
			}
			// The cut comes after 1 MiB, give or take one piece of a long line.
			if n := bytesPerInput[i]; n < 1<<20 || n > 2<<20 {
				t.Errorf("input %d: %d bytes reached the caller; want about 1 MiB", i, n)
			}
			note = last
		}
		for _, p := range peaks {
			// An idle worker or agent is well over 100 MiB already (the burla binary
			// links a Temporal server); what printing may add is a few MiB of buffers.
			// (A worker started during the job was still starting when first seen.)
			if p.peak > 200<<10 || (p.atStart && p.peak-p.base > 64<<10) {
				t.Errorf("%s peaked at %d MiB (from %d MiB) while 200 MiB were printed; want under 200 MiB, and less than 64 MiB of growth", p.name, p.peak>>10, p.base>>10)
			}
		}
		t.Logf("200 MiB printed in %v; the caller got %d + %d bytes; peak RSS: %s", took, bytesPerInput[1], bytesPerInput[2], describePeaks(peaks))
		return "ok; " + note
	})

	run("TwoHundredMiBInput", func(t *testing.T) string {
		const size = 200 << 20
		in := []string{"small", strings.Repeat("a", size)}
		resetPeakRSS(t, os.Getpid())
		before := peakRSS(os.Getpid())
		w := watchPeaks(t, "container-worker", "node-agent")
		start := time.Now()
		out, err := burla.RemoteParallelMap(testCtx(t, 3*time.Minute), length, in, opts()...)
		took := time.Since(start)
		peaks := w.stop()
		if err != nil {
			t.Fatalf("a %d-byte input: %v", size, err)
		}
		if fmt.Sprint(out) != fmt.Sprint([]int{5, size}) {
			t.Fatalf("lengths %v; want [5 %d]", out, size)
		}
		peak := peakRSS(os.Getpid())
		t.Logf("200 MiB input in %v; client peak RSS %d MiB (%d MiB before the call, the input included); cluster peak RSS: %s", took, peak>>10, before>>10, describePeaks(peaks))
		// The input's JSON, the encoder's buffer and the blob upload's buffers are
		// expected; much more is not.
		if peak-before > 5*size>>10 {
			t.Errorf("client peak RSS grew by %d MiB for a 200 MiB input; want under 1000 MiB", (peak-before)>>10)
		}
		return fmt.Sprintf("ok in %v, client peak RSS %d MiB", took.Round(100*time.Millisecond), peak>>10)
	})

	run("TwoMillionInputs", func(t *testing.T) string {
		// Each input is one call on one of four workers: two million take a minute
		// or two; -short runs a tenth.
		n := 2_000_000
		if testing.Short() {
			n /= 10
		}
		in := make([]int, n)
		for i := range in {
			in[i] = i
		}
		runtime.GC()
		debug.FreeOSMemory()
		resetPeakRSS(t, os.Getpid())
		before := peakRSS(os.Getpid())
		start := time.Now()
		out, err := burla.RemoteParallelMap(testCtx(t, 5*time.Minute), square, in, opts()...)
		took := time.Since(start)
		peak := peakRSS(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != n {
			t.Fatalf("%d outputs; want %d", len(out), n)
		}
		for i, o := range out {
			if o != i*i {
				t.Fatalf("output %d = %d; want %d", i, o, i*i)
			}
		}
		rate := float64(n) / took.Seconds()
		t.Logf("%d inputs in %v: %.0f inputs/s; client peak RSS %d MiB (%d MiB before)", n, took, rate, peak>>10, before>>10)
		return fmt.Sprintf("ok, %.0f inputs/s", rate)
	})

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-20s | %-9s | %s\n", "case", "time", "outcome")
	for _, r := range rows {
		outcome := r.outcome
		if len(outcome) > 160 {
			outcome = outcome[:157] + "..."
		}
		fmt.Fprintf(&b, "%-20s | %-9v | %s\n", r.name, r.took.Round(10*time.Millisecond), outcome)
	}
	t.Log(b.String())
}

// buildTiny builds a program that does nothing for goos/goarch and returns its path.
func buildTiny(t *testing.T, dir, goos, goarch string) string {
	t.Helper()
	src := filepath.Join(dir, "tiny-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, src, "go.mod", "module tiny\n\ngo 1.26\n")
	writeFile(t, src, "main.go", "package main\n\nfunc main() {}\n")
	out := filepath.Join(dir, "tiny-"+goos+"-"+goarch)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a %s/%s program: %v\n%s", goos, goarch, err, b)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// peakRSS is a process's peak resident set size in KiB (VmHWM), or -1 if it is gone.
func peakRSS(pid int) int { return procStatusKB(pid, "VmHWM:") }

// procStatusKB reads a field in kB from /proc/PID/status, or -1.
func procStatusKB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return -1
			}
			return kb
		}
	}
	return -1
}

// resetPeakRSS sets a process's VmHWM back to its current RSS (Linux's clear_refs).
func resetPeakRSS(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("reset peak RSS of %d: %v", pid, err)
	}
}

// procPeak is one process's peak RSS while a peakWatch ran, in KiB.
type procPeak struct {
	name       string // its role and PID
	base, peak int    // RSS when first seen, and the peak since
	atStart    bool   // it was running when the watch began
}

// peakWatch samples the peak RSS of the cluster's processes. Container workers are
// replaced after every job, so their peaks must be read while they run.
type peakWatch struct {
	t     *testing.T
	words []string
	mu    sync.Mutex
	peaks map[int]*procPeak
	quit  chan struct{}
	done  chan struct{}
}

// watchPeaks samples, every 20ms until stop, the processes whose command lines
// have any of words; the peaks of those running now start from their present RSS.
func watchPeaks(t *testing.T, words ...string) *peakWatch {
	w := &peakWatch{t: t, words: words, peaks: map[int]*procPeak{}, quit: make(chan struct{}), done: make(chan struct{})}
	w.sample(true)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.quit:
				w.sample(false)
				return
			case <-tick.C:
				w.sample(false)
			}
		}
	}()
	return w
}

func (w *peakWatch) sample(first bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, word := range w.words {
		for _, pid := range dev.Processes(word) {
			p := w.peaks[pid]
			if p == nil {
				if first {
					resetPeakRSS(w.t, pid)
				}
				rss := procStatusKB(pid, "VmRSS:")
				if rss < 0 {
					continue
				}
				p = &procPeak{name: fmt.Sprintf("%s %d", word, pid), base: rss, atStart: first}
				w.peaks[pid] = p
			}
			p.peak = max(p.peak, procStatusKB(pid, "VmHWM:"))
		}
	}
}

// stop ends the sampling and returns every process's peak, largest first.
func (w *peakWatch) stop() []procPeak {
	close(w.quit)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []procPeak
	for _, p := range w.peaks {
		ps = append(ps, *p)
	}
	slices.SortFunc(ps, func(a, b procPeak) int { return b.peak - a.peak })
	return ps
}

func describePeaks(ps []procPeak) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%s: %d MiB (from %d)", p.name, p.peak>>10, p.base>>10))
	}
	return strings.Join(s, ", ")
}
