package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/burla-temporal/burla/dashboard"
	burla "github.com/burla-temporal/burla/sdk"
)

// chromiumPath is Debian's chromium, which `make test` installs with
// `make chromium`.
const chromiumPath = "/usr/bin/chromium"

// The dashboard test's job: long enough (dashboardInputs calls of dashboardCall on
// 4 CPUs, about 7 s) for the page to be checked while it runs.
const (
	dashboardInputs = 24
	dashboardCall   = 1200 * time.Millisecond
)

var slowPrinter = burla.Func("slowPrinter", func(ctx context.Context, x int) (int, error) {
	fmt.Printf("dashboard line %d\n", x)
	time.Sleep(dashboardCall)
	return x, nil
})

// TestDashboard follows a job in the web dashboard in headless Chromium: the nodes
// and standby settings, the job's row and progress while it runs, its logs arriving
// live, its link into the Temporal UI, and its end.
func TestDashboard(t *testing.T) {
	if dev.Addrs.Dashboard == "" {
		t.Fatal("the dev cluster reports no dashboard address (burla dev --dashboard-port)")
	}
	b := startChromium(t)
	b.do(t, "open the dashboard", 30*time.Second, chromedp.Navigate(dev.Addrs.Dashboard))
	// A job placed on a node still being reset after an earlier test waits for it.
	waitStandby(t, 2)

	in := make([]int, dashboardInputs)
	for i := range in {
		in[i] = i
	}
	ctx := testCtx(t, 2*time.Minute)
	submitted := time.Now()
	j, err := burla.Submit(ctx, slowPrinter, in, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	var (
		outs    []int
		outErr  error
		endedAt time.Time
		ended   = make(chan struct{})
	)
	go func() {
		defer close(ended)
		outs, outErr = j.Outputs(ctx)
		endedAt = time.Now()
	}()
	t.Cleanup(func() {
		select {
		case <-ended:
		default:
			j.Cancel(context.Background())
			<-ended
		}
	})

	// While the job runs.
	row := b.waitFor(t, "the job's row in state Running with a progress bar", 15*time.Second, `(id) => {
		const tr = document.querySelector('#jobs tr.job[data-id="' + id + '"]');
		const bar = tr && tr.querySelector("td.progress .bar");
		if (!tr || tr.dataset.state !== "Running" || !bar || bar.dataset.fraction === "") return false;
		return tr.innerText;
	}`, id)
	t.Logf("job row: %s", row)
	nodes := b.waitFor(t, "2 nodes with states, one working on the job, and 2 standby nodes", 15*time.Second, `(id) => {
		const sb = document.querySelector('#standby dd[data-key="Nodes"]');
		const rows = [...document.querySelectorAll("#nodes tr.node")];
		const states = rows.map((tr) => tr.cells[1].textContent);
		if (!sb || sb.textContent !== "2" || rows.length !== 2 || states.includes("")) return false;
		if (!rows.some((tr) => tr.cells[1].textContent === "assigned" && tr.cells[5].textContent === id)) return false;
		return rows.map((tr) => tr.dataset.id + " " + tr.cells[1].textContent).join(", ");
	}`, id)
	t.Logf("nodes: %s", nodes)

	b.do(t, "click the job's row", 10*time.Second,
		chromedp.Click(chromedp.CSS(`#jobs tr.job[data-id="`+id+`"] td`)),
		chromedp.WaitVisible(chromedp.ID("job")))
	// The browser's clock is this machine's: a line shown before the job ended
	// arrived live.
	first := b.waitFor(t, "a log line in the job panel", 15*time.Second, `(id) => {
		const logs = document.querySelector("#logs");
		const n = logs.querySelectorAll(".line").length;
		if (document.querySelector("#job-id").textContent !== id || (n === 0 && !logs.dataset.ended)) return false;
		return {lines: n, ended: logs.dataset.ended || "", at: Date.now()};
	}`, id).(map[string]any)
	seenAt := time.UnixMilli(int64(first["at"].(float64)))
	t.Logf("%v log lines showed %v after the job was submitted", first["lines"], seenAt.Sub(submitted).Round(time.Millisecond))
	b.screenshot(t, "1-job-running")
	select {
	case <-ended:
		if !seenAt.Before(endedAt) {
			t.Errorf("the first log line showed at %v, after the job's results had all arrived at %v: logs are not live",
				seenAt.Format(time.StampMilli), endedAt.Format(time.StampMilli))
		}
	default:
	}
	if first["ended"] != "" {
		t.Errorf("the log stream ended (%v) before a line showed:\n%s", first["ended"], b.snapshot())
	}

	wantLink := dev.Addrs.UI + "/namespaces/default/workflows/" + id
	links := b.waitFor(t, "the job's links into the Temporal UI", 10*time.Second, `(id) => {
		const a = document.querySelector("#job-link");
		const ra = document.querySelector('#jobs tr.job[data-id="' + id + '"] a.temporal');
		if (a.hidden || !ra) return false;
		return [a.getAttribute("href"), ra.getAttribute("href")];
	}`, id).([]any)
	if links[0] != wantLink || links[1] != wantLink {
		t.Errorf("Temporal links: job panel %q, jobs table %q; want %q", links[0], links[1], wantLink)
	}

	// After the job.
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatalf("job %s did not end: %v\n%s", id, ctx.Err(), b.snapshot())
	}
	if outErr != nil {
		t.Fatalf("job %s: %v", id, outErr)
	}
	if !slices.Equal(outs, in) {
		t.Fatalf("job %s outputs = %v; want %v", id, outs, in)
	}
	lines := b.waitFor(t, "the job Succeeded, its logs ended and its progress done", 15*time.Second, `(id) => {
		const logs = document.querySelector("#logs");
		const tr = document.querySelector('#jobs tr.job[data-id="' + id + '"]');
		const bar = tr && tr.querySelector("td.progress .bar");
		if (logs.dataset.ended !== "Succeeded" || document.querySelector("#job-state").textContent !== "Succeeded" ||
			!tr || tr.dataset.state !== "Succeeded" || !bar || bar.dataset.fraction !== "1.000") return false;
		return [...logs.querySelectorAll(".line")].map((l) => l.textContent);
	}`, id).([]any)
	var got, want []string
	for _, l := range lines {
		got = append(got, l.(string))
	}
	for i := range dashboardInputs {
		want = append(want, fmt.Sprintf("[%d] dashboard line %d\n", i, i))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the logs panel shows %d lines:\n%q\nwant %d:\n%q\n%s", len(got), got, len(want), want, b.snapshot())
	}

	b.screenshot(t, "2-job-succeeded")

	// The logs of one input alone.
	only := b.waitFor(t, "the logs panel filtered to input 3", 15*time.Second, `() => {
		const box = document.querySelector("#log-input");
		if (box.value !== "3") {
			box.value = "3";
			box.dispatchEvent(new Event("change"));
			return false;
		}
		const logs = document.querySelector("#logs");
		if (!logs.dataset.ended) return false;
		return [...logs.querySelectorAll(".line")].map((l) => l.textContent);
	}`).([]any)
	if len(only) != 1 || only[0] != "[3] dashboard line 3\n" {
		t.Errorf("the logs panel filtered to input 3 shows %q", only)
	}
	b.screenshot(t, "3-logs-of-input-3")
}

// TestDashboardCancelsAJob cancels a running job with the job panel's button,
// which asks to be clicked twice: the job's client gets a Cancelled error, and
// the panel shows the job Cancelled, with no button.
func TestDashboardCancelsAJob(t *testing.T) {
	b := startChromium(t)
	waitStandby(t, 2)
	ctx := testCtx(t, 2*time.Minute)
	j, err := burla.Submit(ctx, nap, []int{60_000, 60_000}, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	ended := make(chan error, 1)
	go func() {
		_, err := j.Outputs(ctx)
		ended <- err
	}()
	b.do(t, "open the job in the dashboard", 30*time.Second, chromedp.Navigate(dev.Addrs.Dashboard+"/#job="+id))
	b.waitFor(t, "the job Running with a cancel button", 20*time.Second, `(id) => {
		const cb = document.querySelector("#job-cancel");
		return document.querySelector("#job-state").textContent === "Running" && !cb.hidden && cb.dataset.job === id;
	}`, id)
	b.do(t, "click the cancel button once", 10*time.Second, chromedp.Click(chromedp.ID("job-cancel")))
	armed := b.waitFor(t, "the button asking for a second click", 5*time.Second, `() => {
		const cb = document.querySelector("#job-cancel");
		return cb.dataset.state === "armed" && cb.textContent;
	}`)
	t.Logf("after one click the button says %q", armed)
	b.screenshot(t, "1-cancel-armed")
	select {
	case err := <-ended:
		t.Fatalf("one click ended the job: %v", err)
	case <-time.After(time.Second):
	}
	clicked := time.Now()
	b.do(t, "click it again", 10*time.Second, chromedp.Click(chromedp.ID("job-cancel")))
	select {
	case err := <-ended:
		if !burla.IsKind(err, burla.KindCancelled) {
			t.Errorf("the cancelled job's client got %v; want a Cancelled error", err)
		}
		t.Logf("the client saw the job end %v after the second click", time.Since(clicked).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatalf("the job did not end after the cancel:\n%s", b.snapshot())
	}
	b.waitFor(t, "the job Cancelled in the panel, with no button", 20*time.Second, `() => {
		return document.querySelector("#job-state").textContent === "Cancelled" && document.querySelector("#job-cancel").hidden;
	}`)
	b.screenshot(t, "2-cancelled")
}

// browser is a tab of a headless Chromium that the test started.
type browser struct {
	ctx    context.Context
	output *lockedBuffer
}

// startChromium starts Chromium with a fresh profile and stops it when the test
// ends. The machine's network is closed, so everything that would reach out
// (background networking, component updates, sync, QUIC) is off.
func startChromium(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v: install Debian's chromium (`make chromium`, as root; `make test` runs it)", chromiumPath, err)
	}
	profile, err := os.MkdirTemp("", "burla-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's helpers can still write to the profile for a moment after it exits.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	out := &lockedBuffer{}
	allocCtx, stopAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(out),
	)
	t.Cleanup(stopAlloc)
	ctx, stop := chromedp.NewContext(allocCtx)
	t.Cleanup(stop)
	t.Cleanup(func() {
		if t.Failed() {
			s := out.String()
			if len(s) > 4000 {
				s = "…" + s[len(s)-4000:]
			}
			t.Logf("chromium's output (the end):\n%s", s)
		}
	})
	// The first run starts the browser and lives as long as ctx, so it takes no
	// timeout of its own.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v\n%s", chromiumPath, err, out.String())
		}
	case <-time.After(time.Minute):
		stop()
		t.Fatalf("%s did not start in a minute:\n%s", chromiumPath, out.String())
	}
	return &browser{ctx: ctx, output: out}
}

// do runs actions with a timeout, failing the test with what the page shows.
func (b *browser) do(t *testing.T, what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b.snapshot())
	}
}

// waitFor polls the JavaScript function pageFunc, called with args, until it
// returns a truthy value, and returns that value (decoded from JSON).
func (b *browser) waitFor(t *testing.T, what string, timeout time.Duration, pageFunc string, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.PollFunction[any](pageFunc,
		chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(timeout),
		chromedp.WithPollingArgs(args...)))
	if errors.Is(err, chromedp.ErrPollingTimeout) {
		t.Fatalf("waiting %v for %s: the page never showed it:\n%s", timeout, what, b.snapshot())
	}
	if err != nil {
		t.Fatalf("waiting for %s: %v\n%s", what, err, b.snapshot())
	}
	return v
}

// snapshotJS describes the parts of the page the test checks.
const snapshotJS = `(() => {
	const text = (el) => el ? el.innerText.replace(/\t/g, " | ").replace(/\n/g, " / ") : "(missing)";
	const q = (s) => document.querySelector(s);
	const out = ["page " + location.href + ", " + (q("#updated") ? q("#updated").textContent : "")];
	if (q("#error") && !q("#error").hidden) out.push("error: " + q("#error").textContent);
	out.push("standby: " + text(q("#standby")));
	out.push("nodes: " + text(q("#node-count")));
	for (const tr of document.querySelectorAll("#nodes tr.node")) out.push("  " + text(tr));
	const jobs = [...document.querySelectorAll("#jobs tr.job")];
	out.push("jobs: " + jobs.length + " rows");
	for (const tr of jobs.slice(0, 5)) {
		const bar = tr.querySelector(".bar");
		out.push("  [data-state=" + tr.dataset.state + " fraction=" + (bar ? bar.dataset.fraction : "none") + "] " + text(tr));
	}
	const job = q("#job");
	out.push("job panel" + (job && job.hidden ? " (hidden)" : "") + ": " + (q("#job-id") ? q("#job-id").textContent : "") +
		" state " + (q("#job-state") ? q("#job-state").textContent : "") +
		", link " + (q("#job-link") ? q("#job-link").getAttribute("href") : "") + ", " + text(q("#job-details")));
	const logs = q("#logs");
	if (logs) {
		const lines = [...logs.querySelectorAll(".line")].map((l) => l.textContent.trimEnd());
		out.push("logs [data-ended=" + (logs.dataset.ended || "") + "] " + lines.length + " lines " + text(q("#log-count")) + ":");
		for (const l of lines.slice(-30)) out.push("  " + l);
	}
	return out.join("\n");
})()`

// snapshot is what the page shows, for failure messages.
// screenshot keeps a PNG of the whole page as name.png among the test's
// artifacts (go test -artifacts -outputdir DIR keeps them; make test does).
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Error(err)
		return
	}
	t.Logf("screenshot: %s", path)
}

func (b *browser) snapshot() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](snapshotJS))
	if err != nil {
		return fmt.Sprintf("(could not read the page: %v)", err)
	}
	return "the page shows:\n" + s
}

// lockedBuffer is a bytes.Buffer written from another goroutine: Chromium's output,
// which chromedp writes from its own, or the SDK's progress display.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sseEvent is one server-sent event of the dashboard's log stream.
type sseEvent struct {
	name, id string
	lines    []dashboard.Line
}

// readLogs reads the dashboard's log stream of job id, with the query and
// Last-Event-ID given, until its "end" event.
func readLogs(t *testing.T, ctx context.Context, id, query, lastID string) []sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", dev.Addrs.Dashboard+"/api/jobs/"+id+"/logs"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("logs%s: %s: %s", query, resp.Status, b)
	}
	var events []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" {
				events = append(events, ev)
				if ev.name == "end" {
					return events
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: ") && ev.name == "lines":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.lines); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatalf("logs%s ended without an end event: %v", query, sc.Err())
	return nil
}

// linesOf are the events' lines, as "[index] text".
func linesOf(events []sseEvent) []string {
	var out []string
	for _, ev := range events {
		for _, l := range ev.lines {
			out = append(out, fmt.Sprintf("[%d] %s", l.Index, l.Text))
		}
	}
	return out
}

// The dashboard's log stream resumes after the lines an earlier connection
// delivered (EventSource sends the last event's ID on reconnecting), and
// filters by input.
func TestDashboardLogsResumeAndFilter(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	j, err := burla.Submit(ctx, chatty, []int{0, 1, 2, 3, 4, 5}, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Outputs(ctx); err != nil {
		t.Fatal(err)
	}
	all := readLogs(t, ctx, j.ID(), "", "")
	lines := linesOf(all)
	if len(lines) != 18 {
		t.Fatalf("the stream has %d lines: %q; want 18", len(lines), lines)
	}
	if last := all[len(all)-2]; last.name != "lines" || last.id != "18" {
		t.Errorf("the last lines event has ID %q; want 18, the count of lines", last.id)
	}
	for _, after := range []int{1, 7, 17, 18} {
		got := linesOf(readLogs(t, ctx, j.ID(), "", strconv.Itoa(after)))
		if !slices.Equal(got, lines[after:]) {
			t.Errorf("resumed after %d lines: %q; want %q", after, got, lines[after:])
		}
	}
	var want []string
	for _, l := range lines {
		if strings.HasPrefix(l, "[4] ") {
			want = append(want, l)
		}
	}
	got := readLogs(t, ctx, j.ID(), "?input=4", "")
	if !slices.Equal(linesOf(got), want) || len(want) != 3 {
		t.Errorf("input 4's lines: %q; want %q", linesOf(got), want)
	}
	if resumed := linesOf(readLogs(t, ctx, j.ID(), "?input=4", "2")); !slices.Equal(resumed, want[2:]) {
		t.Errorf("input 4's lines resumed after 2: %q; want %q", resumed, want[2:])
	}
}
