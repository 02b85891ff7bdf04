package containerworker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/tenantbox"
	"github.com/burla-temporal/burla/wire"
)

// helloTimeout bounds how long a program may take to start in worker mode.
const helloTimeout = 15 * time.Second

// markerWait bounds how long a worker waits, after a call's result, for the call's
// end-of-call markers on stdout and stderr (they are written before the result).
const markerWait = 2 * time.Second

// proc is the user's program running in worker mode. It runs one call at a time,
// in the order the calls were sent, and the worker sends calls ahead of the one
// running (see run), so that the program never waits for the worker between calls.
type proc struct {
	cmd     *exec.Cmd
	calls   *wire.Writer
	callsW  *os.File
	results chan wire.Result // closed when the program closes its result stream
	hello   wire.Hello

	order          *callOrder // which input each call sent was for, in order
	sink           *lineSink  // where the captures' lines go
	stdout, stderr *capture
	gone           atomic.Bool // killed, or found dead: start another before the next call
	mem            *memoryWatch
	release        func() // once reaped (see tenantbox.Start)
	waitOnce       sync.Once
	waitErr        error
}

// runAs is where, and as whom, a process of a tenant's code runs.
type runAs struct {
	scratch string              // its HOME and TMPDIR
	dir     string              // its working directory; "" for this process's
	cred    *syscall.Credential // its user; nil for this process's
}

// asWorker is how a worker runs a job's program or command: in the worker's own
// working directory, with the worker's scratch directory (its TMPDIR, which the
// runtime gives it, else the system's) as the call's HOME and TMPDIR, and as the
// worker's own user, which a container worker has made sure is not root
// (tenantbox.Isolate).
func asWorker() runAs { return runAs{scratch: os.TempDir()} }

// startProc starts the program at path in worker mode, as a worker runs it (see
// asWorker), with env (the job's variables, "NAME=value") added to its
// environment. What it prints is held until its sink is pointed somewhere
// (p.sink.to). It is killed when its resident memory passes memoryMB(), if that is
// above 0.
func startProc(path string, limit int, env []string, memoryMB func() int64) (*proc, error) {
	return startProcAs(path, limit, env, memoryMB, asWorker())
}

// startProcAs is startProc for a program that runs as as says.
func startProcAs(path string, limit int, env []string, memoryMB func() int64, as runAs) (*proc, error) {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	marker := wire.Marker(hex.EncodeToString(nonce[:]))
	callsR, callsW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		callsR.Close()
		callsW.Close()
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &proc{results: make(chan wire.Result, 1), callsW: callsW, calls: wire.NewWriter(callsW), order: &callOrder{}, sink: &lineSink{}}
	p.stdout = newCapture(store.Stdout, outR, marker, limit, p.order, p.sink.add)
	p.stderr = newCapture(store.Stderr, errR, marker, limit, p.order, p.sink.add)
	cmd := exec.Command(path)
	// The program gets nothing of the node's environment but what
	// tenantbox.UserEnv lets through: no key, token or credential that is not its
	// job's own.
	cmd.Env = tenantbox.UserEnv(os.Environ(), as.scratch, env, []string{wire.EnvWorker + "=1", wire.EnvMarker + "=" + hex.EncodeToString(nonce[:])})
	cmd.Dir = as.dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{callsR, resW} // fds 3 and 4
	// Its own process group, so that a timeout kills whatever it started too; and it
	// dies with this worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: as.cred}
	p.release, err = tenantbox.Start(cmd)
	// The child holds its ends now; ours must close so that EOF means it is gone.
	callsR.Close()
	resW.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		callsW.Close()
		resR.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p.cmd = cmd
	p.mem = watchMemory(cmd.Process.Pid, memoryMB, p.kill)
	go p.stdout.run()
	go p.stderr.run()

	hello := make(chan error, 1)
	go func() {
		defer resR.Close()
		r := wire.NewReader(resR)
		h, err := r.ReadHello()
		p.hello = h
		hello <- err
		if err != nil {
			close(p.results)
			return
		}
		for {
			res, err := r.ReadResult()
			if err != nil {
				close(p.results)
				return
			}
			p.results <- res
		}
	}()
	select {
	case err = <-hello:
	case <-time.After(helloTimeout):
		err = fmt.Errorf("no hello within %v", helloTimeout)
	}
	if err != nil {
		p.kill()
		status := p.wait()
		return nil, fmt.Errorf("the program did not start in worker mode (%v; %s); is burla.Main() the first call in its main?%s", err, status, p.stderr.tailNote())
	}
	if p.hello.Version != wire.Version {
		p.kill()
		p.wait() // reaped
		return nil, fmt.Errorf("the program speaks worker protocol %d, this worker speaks %d: rebuild it against this version of burla", p.hello.Version, wire.Version)
	}
	return p, nil
}

// callOutcome is what happened to one call.
type callOutcome struct {
	res  wire.Result
	died bool // the program is gone; start a new one before the next call
	// lost: the call's process ran out of memory or was killed from outside; a job
	// with dynamic resources runs the call again where it has more memory.
	lost bool
}

// Pipelining: a worker keeps up to window calls, and up to windowBytes of their
// inputs, sent ahead of the one the program is running.
const (
	window      = 64
	windowBytes = 1 << 20
)

// loader returns an item's encoded input: the chunk's copy, or, if the chunk holds
// only its key, the blob store's.
type loader func(ctx context.Context, it store.Item) ([]byte, error)

// run runs fn on items in order and hands each call's outcome to done as it comes,
// stopping early when done returns false, a call times out or the program dies. It
// returns how many items it handed to done. Calls are sent ahead of the one running,
// on a goroutine of their own, so that a program blocked writing results never waits
// on a worker blocked writing calls. When run returns with calls still sent and not
// answered, it kills the program, whose results could otherwise be taken for the
// next call's: the caller starts another (alive reports false).
func (p *proc) run(ctx context.Context, fn string, items []store.Item, timeout time.Duration, load loader, done func(callOutcome) bool) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	var timeoutMillis int64
	if timeout > 0 {
		timeoutMillis = timeout.Milliseconds()
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	var answered atomic.Int64 // calls whose result run has taken
	wake := make(chan struct{}, 1)
	loadErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sentBytes := make([]int, len(items)+1) // sentBytes[k]: the inputs of calls 0 to k-1
		for k, it := range items {
			for {
				// Calls a to k-1 are in flight.
				if a := int(answered.Load()); k-a < window && (k == a || sentBytes[k]-sentBytes[a] < windowBytes) {
					break
				}
				if p.calls.Flush() != nil {
					return // the program is gone; run sees its results end
				}
				select {
				case <-wake:
				case <-sendCtx.Done():
					return
				}
			}
			if it.Blob != "" && p.calls.Flush() != nil { // the calls queued go while it loads
				return
			}
			input, err := load(sendCtx, it)
			if err != nil {
				loadErr <- fmt.Errorf("input %d: %w", it.Index, err)
				return
			}
			p.order.push(it.Index)
			if p.calls.QueueCall(wire.Call{Index: it.Index, Function: fn, TimeoutMillis: timeoutMillis, Input: input}) != nil {
				return
			}
			sentBytes[k+1] = sentBytes[k] + len(input)
		}
		p.calls.Flush()
	}()
	// Calls may be in flight when run returns early: the program must not live on.
	finished := false
	defer func() {
		stopSending()
		if !finished {
			p.kill()
			p.wait()
			p.gone.Store(true)
		}
		<-sent
	}()

	var timer *time.Timer
	var expired <-chan time.Time
	if timeout > 0 {
		timer = time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	for k, it := range items {
		if k > 0 && timer != nil {
			timer.Reset(timeout) // call k starts as call k-1 ends
		}
		select {
		case res, ok := <-p.results:
			if !ok {
				finished = true // died reaps it
				done(p.died(it.Index))
				return k + 1, nil
			}
			if res.Index != it.Index {
				return k, fmt.Errorf("worker protocol: the program answered input %d, expected input %d", res.Index, it.Index)
			}
			p.stdout.awaitEnd()
			p.stderr.awaitEnd()
			answered.Add(1)
			select {
			case wake <- struct{}{}:
			default:
			}
			if k == len(items)-1 {
				finished = true
			}
			if !done(callOutcome{res: res}) {
				return k + 1, nil
			}
		case <-expired:
			done(callOutcome{died: true, res: wire.Result{Index: it.Index, Err: &wire.Error{
				Kind: store.KindTimeout, Message: fmt.Sprintf("input %d ran past its timeout of %v and was killed", it.Index, timeout)}}})
			return k + 1, nil
		case err := <-loadErr:
			return k, err
		case <-ctx.Done():
			return k, ctx.Err()
		}
	}
	return len(items), nil
}

// alive reports whether the program can take more calls.
func (p *proc) alive() bool { return !p.gone.Load() }

// exited reports whether the program has closed its output, as it does when it
// exits: a program prewarmed a while ago may have died waiting.
func (p *proc) exited() bool {
	select {
	case <-p.stdout.closed:
		return true
	default:
		return false
	}
}

func (p *proc) died(index int64) callOutcome {
	p.gone.Store(true)
	status := p.wait()
	// Let the captures reach EOF so that the call's last lines are shipped first.
	p.stdout.awaitClosed(markerWait)
	p.stderr.awaitClosed(markerWait)
	tail := p.stderr.tail()
	d := classify(p.waitErr, p.mem, tail)
	return callOutcome{died: true, lost: d.lost(), res: wire.Result{Index: index, Err: &wire.Error{
		Kind:    d.kind(),
		Message: d.message(index, status),
		Stack:   tail,
	}}}
}

// wait reaps the program and describes how it ended.
func (p *proc) wait() string {
	p.waitOnce.Do(func() {
		p.callsW.Close()
		p.waitErr = p.cmd.Wait()
		p.release()
		p.mem.close()
	})
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
		return "exited with status 0"
	case errors.As(p.waitErr, &ee):
		return exitStatus(ee)
	}
	return p.waitErr.Error()
}

// exitStatus says how a process ended: "exited with status 3", "was killed by
// signal killed".
func exitStatus(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ee.ExitCode())
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// close ends the program: it exits when its call stream closes.
func (p *proc) close() {
	p.callsW.Close()
	done := make(chan struct{})
	go func() { p.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		p.kill()
		<-done
	}
}

// lineSink passes a program's lines on to a job, holding those printed before the
// program has one (a program started ahead of its job prints as it starts).
type lineSink struct {
	mu   sync.Mutex
	fn   func(store.LogLine)
	held []store.LogLine
}

// maxHeldLines bounds what a program may print before it has a job.
const maxHeldLines = 1000

func (s *lineSink) add(l store.LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fn == nil {
		if len(s.held) < maxHeldLines {
			s.held = append(s.held, l)
		}
		return
	}
	s.fn(l)
}

// to sends the lines held so far, and every line after them, to fn.
func (s *lineSink) to(fn func(store.LogLine)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.held {
		fn(l)
	}
	s.fn, s.held = fn, nil
}

// callOrder records the input of each call sent to a program, in the order sent.
// A capture counts the end-of-call markers it has read, so the output that follows
// the n-th marker is the n-th call's (the program runs calls in order).
type callOrder struct {
	mu   sync.Mutex
	base int     // how many calls were sent before idx[0]
	idx  []int64 // the inputs of calls base, base+1, …
	// ended counts, for each stream, the markers its capture has read; calls that
	// both streams have ended are forgotten.
	ended [3]atomic.Int64
}

func (o *callOrder) push(index int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if past := int(min(o.ended[store.Stdout].Load(), o.ended[store.Stderr].Load())) - o.base; past >= 1024 {
		o.idx = append(o.idx[:0], o.idx[past:]...)
		o.base += past
	}
	o.idx = append(o.idx, index)
}

// at returns the input of the n-th call sent (from 0), or -1 if it has not been sent.
func (o *callOrder) at(n int) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := n - o.base; i >= 0 && i < len(o.idx) {
		return o.idx[i]
	}
	return -1
}

// capture reads one of the program's output streams, splits it into lines,
// attributes each to the call that printed it, and cuts a call's output at a limit.
type capture struct {
	stream uint8
	r      io.ReadCloser
	marker []byte
	limit  int
	order  *callOrder
	lines  func(store.LogLine)

	calls   int   // end-of-call markers read: the output is the calls-th call's
	current int64 // its input, or -1 while not known

	ends   chan struct{} // one token per end-of-call marker seen
	closed chan struct{} // closed at EOF

	used      int  // bytes shipped for the current call
	truncated bool // the current call's cut-off note was sent

	mu    sync.Mutex
	tailB []byte // the last bytes seen, for error reports
}

const tailBytes = 4 << 10

func newCapture(stream uint8, r io.ReadCloser, marker []byte, limit int, order *callOrder, lines func(store.LogLine)) *capture {
	return &capture{stream: stream, r: r, marker: marker, limit: limit, order: order, lines: lines, current: -1,
		ends: make(chan struct{}, 2*window), closed: make(chan struct{})}
}

func (c *capture) run() {
	defer close(c.closed)
	defer c.r.Close()
	br := bufio.NewReaderSize(c.r, captureBuffer)
	var held []byte // the end of a long line's piece that may begin a marker
	for {
		line, err := br.ReadSlice('\n')
		if len(held) > 0 {
			line, held = append(held, line...), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer arrives in pieces, and a marker after
			// output with no newline may straddle two of them: keep back what could
			// be its start, to be read with the next piece.
			if k := markerStart(line, c.marker); k < len(line) {
				held = bytes.Clone(line[k:])
				line = line[:k]
			}
		}
		switch {
		case bytes.HasSuffix(line, c.marker):
			if text := line[:len(line)-len(c.marker)]; len(text) > 0 {
				c.emit(text)
			}
			c.used, c.truncated = 0, false
			c.calls, c.current = c.calls+1, -1
			c.order.ended[c.stream].Store(int64(c.calls))
			c.ends <- struct{}{}
		case len(line) > 0:
			c.emit(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// captureBuffer bounds the pieces a long line is cut into.
const captureBuffer = 64 << 10

// markerStart returns where the longest end of b that is a proper prefix of marker
// begins, or len(b) if no end of b begins a marker.
func markerStart(b, marker []byte) int {
	for k := max(0, len(b)-len(marker)+1); k < len(b); k++ {
		if bytes.HasPrefix(marker, b[k:]) {
			return k
		}
	}
	return len(b)
}

func (c *capture) emit(text []byte) {
	c.mu.Lock()
	c.tailB = append(c.tailB, text...)
	c.tailB = append(c.tailB, '\n')
	if len(c.tailB) > 2*tailBytes {
		c.tailB = append(c.tailB[:0], c.tailB[len(c.tailB)-tailBytes:]...)
	}
	c.mu.Unlock()
	if c.current < 0 {
		c.current = c.order.at(c.calls)
	}
	idx := c.current
	if c.used >= c.limit {
		if !c.truncated {
			c.truncated = true
			c.lines(store.LogLine{Index: idx, Stream: c.stream,
				Text: fmt.Sprintf("[burla: output of input %d cut after %d bytes; the rest of this call's output is dropped]", idx, c.limit)})
		}
		return
	}
	c.used += len(text) + 1
	c.lines(store.LogLine{Index: idx, Stream: c.stream, Text: string(text)})
}

// awaitEnd waits for the current call's end-of-call marker.
func (c *capture) awaitEnd() {
	select {
	case <-c.ends:
		return // most often already read: no timer
	default:
	}
	select {
	case <-c.ends:
	case <-c.closed:
	case <-time.After(markerWait):
	}
}

func (c *capture) awaitClosed(d time.Duration) {
	select {
	case <-c.closed:
	case <-time.After(d):
	}
}

// tail is the last few KiB the stream carried.
func (c *capture) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.tailB
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}

func (c *capture) tailNote() string {
	c.awaitClosed(500 * time.Millisecond)
	if t := c.tail(); t != "" {
		return "\nits stderr ended with:\n" + t
	}
	return ""
}

// Inspect starts the program at path in worker mode, reads what it registers, and
// stops it. It is the control plane's, which holds keys of its own: the program
// runs as a job's would (tenantbox.UserEnv, tenantbox.Start) in a scratch
// directory of its own, and, if this process is root, as a user of its own (see
// inspectBox).
func Inspect(ctx context.Context, path string) (functions []string, goos, goarch string, err error) {
	box, err := newInspectBox(path)
	if err != nil {
		return nil, "", "", fmt.Errorf("inspect %s: %w", path, err)
	}
	defer box.remove()
	p, err := startProcAs(box.program, 0, nil, noMemoryLimit, box.as)
	if err != nil {
		return nil, "", "", err
	}
	defer p.close()
	return p.hello.Functions, p.hello.GOOS, p.hello.GOARCH, nil
}

// inspectBox is where the inspector runs a program: a directory of its own,
// removed after, that holds the program's scratch directory (its working
// directory, HOME and TMPDIR), so that it starts among none of the control
// plane's files. When the inspector is root, the program runs as a user of its own
// (tenantbox.NewTenantUID), which cannot reach where the control plane fetched it
// to: the box holds a copy that user may run and not change, and the scratch
// directory is that user's.
type inspectBox struct {
	dir     string
	program string
	as      runAs
	uid     uint32 // the user the program runs as, when the inspector is root
}

func newInspectBox(path string) (*inspectBox, error) {
	dir, err := os.MkdirTemp("", "burla-inspect-")
	if err != nil {
		return nil, err
	}
	b := &inspectBox{dir: dir, program: path}
	b.as.scratch = filepath.Join(dir, "scratch")
	b.as.dir = b.as.scratch
	if err := b.fill(path); err != nil {
		b.remove()
		return nil, err
	}
	return b, nil
}

func (b *inspectBox) fill(path string) error {
	if err := os.Mkdir(b.as.scratch, 0o700); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chmod(b.dir, 0o711); err != nil {
		return err
	}
	if err := tenantbox.CheckTenantReach(b.dir); err != nil {
		return err
	}
	b.uid = tenantbox.NewTenantUID()
	if err := os.Lchown(b.as.scratch, int(b.uid), int(b.uid)); err != nil {
		return err
	}
	b.program = filepath.Join(b.dir, "program")
	if err := copyProgram(path, b.program); err != nil {
		return fmt.Errorf("copy the program for uid %d: %w", b.uid, err)
	}
	b.as.cred = tenantbox.Credential(b.uid)
	return nil
}

// remove deletes the box. A process the program left behind, still writing in it,
// may keep part of it from going: a few files in the system's temporary directory,
// not worth failing an inspection for.
func (b *inspectBox) remove() {
	if b.uid != 0 {
		_ = tenantbox.ReapTenant(b.uid)
	}
	_ = os.RemoveAll(b.dir)
}

// copyProgram copies the program at src to dst, which anyone may read and run and
// nobody but root may change.
func copyProgram(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o555)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, 0o555) // past the umask
	}
	return err
}
