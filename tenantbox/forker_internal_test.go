package tenantbox

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Starting tenants' processes ends none of the threads of this process: a child
// started elsewhere with a parent-death signal (burla dev's node agents) dies when
// the thread that forked it ends, and must outlive every tenant process.
func TestStartTenantEndsNoThread(t *testing.T) {
	// Children forked from as many of the process's threads as goroutines locked
	// to them can reach.
	var mu sync.Mutex
	var others []*exec.Cmd
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c := exec.Command("sleep", "60")
			c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := c.Start(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			others = append(others, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range others {
			c.Process.Kill()
			c.Wait()
		}
	})
	for range 20 {
		cmd := exec.Command("true")
		release, err := Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		release()
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range others {
		// A child killed and not yet waited for is a zombie.
		if state := procState(c.Process.Pid); state == "Z" || state == "" {
			t.Errorf("child %d, started with a parent-death signal, died as tenants' processes were started (state %q)", c.Process.Pid, state)
		}
	}
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return string(b[i+2])
		}
	}
	return ""
}
