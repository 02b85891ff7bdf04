package containerworker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/store"
)

// share is what the node gives a worker of its current job, as the agent last
// said (Command.Workers and MemoryMB).
type share struct {
	workers  atomic.Int64 // the job's workers on the node; 0 when the agent did not say
	memoryMB atomic.Int64 // this worker's memory for a call; 0: no limit of the worker's own
}

// noMemoryLimit is the limit of a program the worker does not watch.
func noMemoryLimit() int64 { return 0 }

func (s *share) set(workers, memoryMB int) {
	s.workers.Store(int64(workers))
	s.memoryMB.Store(int64(memoryMB))
}

// memoryPoll is how often a call's process's memory is checked against the
// worker's share. Where the runtime limits memory itself (a container's cgroup),
// the kernel acts at once; elsewhere (the process runtime) this watch is the limit.
const memoryPoll = 50 * time.Millisecond

// memoryWatch kills a call's process when its resident memory passes the worker's
// share, as a container's memory limit would, and remembers that it did.
type memoryWatch struct {
	stop     chan struct{}
	done     chan struct{}
	exceeded atomic.Int64 // the limit in MB it passed; 0 if it has not
}

// watchMemory watches the process pid, whose process group kill ends, against
// limitMB (read at each check, so that a resize applies to a running program).
func watchMemory(pid int, limitMB func() int64, kill func()) *memoryWatch {
	m := &memoryWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(memoryPoll)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			limit := limitMB()
			if limit <= 0 {
				continue
			}
			rss, err := residentMB(pid)
			if err != nil {
				return // the process is gone
			}
			if rss > limit {
				m.exceeded.Store(limit)
				kill()
				return
			}
		}
	}()
	return m
}

// close stops the watch; it is safe to call more than once.
func (m *memoryWatch) close() {
	if m == nil {
		return
	}
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// limitPassed is the limit the watch killed the process for, or 0.
func (m *memoryWatch) limitPassed() int64 {
	if m == nil {
		return 0
	}
	return m.exceeded.Load()
}

// residentMB reads a process's resident memory from /proc/PID/statm.
func residentMB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm of %d: %q", pid, b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm of %d: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()) >> 20, nil
}

// death is why a call's process ended while it ran the call.
type death struct {
	// oom: it ran out of memory (the worker's watch killed it, the kernel's OOM
	// killer did, or the Go runtime said so). killed: a signal from outside
	// ended it. Either way the call may succeed where it has more memory.
	oom, killed bool
	limitMB     int64 // the share it passed, when the worker's watch killed it
}

// outOfMemory lists what a program prints as it dies for want of memory.
var outOfMemory = [][]byte{
	[]byte("runtime: out of memory"), // the Go runtime
	[]byte("cannot allocate memory"), // ENOMEM
	[]byte("std::bad_alloc"),         // C++
	[]byte("MemoryError"),            // Python
	[]byte("JavaScript heap out of memory"),
}

// classify says why a process ended, from how it was reaped, the watch, and the
// tail of what it printed to stderr.
func classify(waitErr error, watch *memoryWatch, stderrTail string) death {
	d := death{limitMB: watch.limitPassed()}
	if d.limitMB > 0 {
		d.oom = true
		return d
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			d.killed = true
			// The kernel's OOM killer sends SIGKILL; a container's cgroup records it.
			d.oom = ws.Signal() == syscall.SIGKILL && cgroupOOMKills() > 0
		}
	}
	for _, s := range outOfMemory {
		if bytes.Contains([]byte(stderrTail), s) {
			d.oom = true
		}
	}
	return d
}

// lost reports whether the call died for want of resources rather than by its own
// doing: a job with dynamic resources runs it again where it has more.
func (d death) lost() bool { return d.oom || d.killed }

// message describes the death of the process running input index.
func (d death) message(index int64, status string) string {
	switch {
	case d.limitMB > 0:
		return fmt.Sprintf("the function's process ran out of memory while running input %d: it passed its share of the node, %d MB, and was killed", index, d.limitMB)
	case d.oom:
		return fmt.Sprintf("the function's process ran out of memory while running input %d (it %s)", index, status)
	}
	return fmt.Sprintf("the function's process %s while running input %d", status, index)
}

// kind is the RemoteError kind of the death.
func (d death) kind() string {
	if d.oom {
		return store.KindOOM
	}
	return store.KindExit
}

// cgroupOOMKills reads how many processes the kernel killed for want of memory in
// this worker's cgroup (a container's); 0 where there is no such count.
func cgroupOOMKills() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.events")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
