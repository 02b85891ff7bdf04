package containerworker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/tenantbox"
	"github.com/burla-temporal/burla/wire"
)

// maxCommandOutput bounds what one command call may print to stdout, its output.
const maxCommandOutput = 64 << 20

// command runs a job's command once per input: the input on its stdin, its stdout
// the output, its stderr the call's log.
type command struct {
	argv  []string
	env   []string // the job's variables, "NAME=value"
	limit int
	lines func(store.LogLine)
	// memoryMB is the worker's memory share: a call whose process passes it is
	// killed (0: no limit).
	memoryMB func() int64
}

func (c *command) close() {}

func (c *command) alive() bool { return true }

// run runs each item's command in turn.
func (c *command) run(ctx context.Context, fn string, items []store.Item, timeout time.Duration, load loader, done func(callOutcome) bool) (int, error) {
	for k, it := range items {
		input, err := load(ctx, it)
		if err != nil {
			return k, fmt.Errorf("input %d: %w", it.Index, err)
		}
		oc, err := c.call(ctx, wire.Call{Index: it.Index, Function: fn, Input: input}, timeout)
		if err != nil {
			return k, err
		}
		if !done(oc) {
			return k + 1, nil
		}
	}
	return len(items), nil
}

func (c *command) call(ctx context.Context, call wire.Call, timeout time.Duration) (callOutcome, error) {
	// Inputs arrive JSON-encoded; a string is passed as its text.
	input := call.Input
	var text string
	if json.Unmarshal(call.Input, &text) == nil {
		input = []byte(text)
	}
	cctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(cctx, c.argv[0], c.argv[1:]...)
	// Nothing of the node's environment but what tenantbox.UserEnv lets through,
	// as a worker runs its calls (asWorker).
	as := asWorker()
	cmd.Env = tenantbox.UserEnv(os.Environ(), as.scratch, c.env)
	cmd.Stdin = bytes.NewReader(input)
	out := &cappedBuffer{max: maxCommandOutput}
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return callOutcome{}, err
	}
	cmd.Dir = as.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: as.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	fail := func(kind, msg, stack string) (callOutcome, error) {
		return callOutcome{res: wire.Result{Index: call.Index, Err: &wire.Error{Kind: kind, Message: msg, Stack: stack}}}, nil
	}
	release, err := tenantbox.Start(cmd)
	if err != nil {
		return fail(store.KindExit, fmt.Sprintf("start command %q: %v", c.argv, err), "")
	}
	defer release() // after Wait
	mem := watchMemory(cmd.Process.Pid, c.memoryMB, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var tail []string
	used, cut := 0, false
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
		if used += len(line) + 1; used > c.limit {
			if !cut {
				cut = true
				c.lines(store.LogLine{Index: call.Index, Stream: store.Stderr, Text: fmt.Sprintf("[burla: output of input %d cut after %d bytes]", call.Index, c.limit)})
			}
			continue
		}
		c.lines(store.LogLine{Index: call.Index, Stream: store.Stderr, Text: line})
	}
	err = cmd.Wait()
	mem.close()
	switch {
	case ctx.Err() != nil:
		return callOutcome{}, ctx.Err()
	case cctx.Err() != nil:
		return fail(store.KindTimeout, fmt.Sprintf("input %d ran past its timeout of %v and was killed", call.Index, timeout), "")
	case out.over:
		return fail(store.KindEncode, fmt.Sprintf("command printed more than %d bytes for input %d", maxCommandOutput, call.Index), "")
	case err != nil:
		stack := strings.Join(tail, "\n")
		d := classify(err, mem, stack)
		var ee *exec.ExitError
		msg := err.Error()
		if errors.As(err, &ee) {
			msg = fmt.Sprintf("command %q %s", c.argv, exitStatus(ee))
			if d.oom {
				msg = d.message(call.Index, exitStatus(ee))
			}
		}
		oc, _ := fail(d.kind(), msg, stack)
		oc.lost = d.lost()
		return oc, nil
	}
	b, _ := json.Marshal(strings.TrimSuffix(out.String(), "\n"))
	return callOutcome{res: wire.Result{Index: call.Index, Output: b}}, nil
}

// cappedBuffer keeps at most max bytes and remembers whether more came.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
