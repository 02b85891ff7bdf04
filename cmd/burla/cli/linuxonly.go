//go:build linux

package cli

import (
	"fmt"
	"syscall"

	"github.com/spf13/cobra"
)

// undumpable is the PreRun of the commands that hold the cluster's credentials,
// in their environment or memory (dev, control-plane, node-agent,
// container-worker); node agents and container workers run next to users' code.
// A process that is not dumpable cannot have its /proc/PID/environ or memory read
// by another of the same user without CAP_SYS_PTRACE.
func (m *Main) undumpable(*cobra.Command, []string) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		fmt.Fprintf(m.Stderr, "burla: prctl(PR_SET_DUMPABLE): %v\n", errno)
	}
}
