package gce

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/burla-temporal/burla/tenantbox"
)

// The ruleset every node (and the control plane's VM) loads at boot, loaded for
// real into a network namespace of the test's own that has the metadata server's
// address: tenants' code (tenantbox.TenantUID, or a user of its job's own) is refused its HTTP at once,
// and still has its DNS; root (the node agent, which hands the workers their
// store tokens) reaches it.
func TestMetadataRulesetClosesTheServerToTenants(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading an nftables ruleset into a network namespace needs root (make test runs as root)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (scripts/ensure-docker.sh installs it): %v", tool, err)
		}
	}
	ns := fmt.Sprintf("burla-md-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	in := func(args ...string) { t.Helper(); run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "addr", "add", metadataIPv4+"/32", "dev", "lo")
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(metadataRuleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f metadata-block.nft: %v\n%s", err, out)
	}

	// The server: HTTP (tokens) and DNS over TCP, listening as root.
	var lns []net.Listener
	inNetns(t, ns, 0, func() {
		for _, port := range []string{"80", "53"} {
			ln, err := net.Listen("tcp", net.JoinHostPort(metadataIPv4, port))
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
	})
	for _, ln := range lns {
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}

	dial := func(uid int, port string) error {
		var err error
		inNetns(t, ns, uid, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp", net.JoinHostPort(metadataIPv4, port), 2*time.Second)
			if err == nil {
				c.Close()
			}
		})
		return err
	}
	// The docker runtime's user, and one of the process runtime's per-job users.
	for _, uid := range []int{tenantbox.TenantUID, 200001} {
		start := time.Now()
		err := dial(uid, "80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("uid %d dialled the metadata server's HTTP: %v; want the connection refused", uid, err)
		} else if took := time.Since(start); took > time.Second {
			t.Errorf("uid %d: the refusal took %v; want it at once (a reset, not a drop)", uid, took)
		}
		if err := dial(uid, "53"); err != nil {
			t.Errorf("uid %d could not reach the metadata server's DNS: %v", uid, err)
		}
	}
	if err := dial(0, "80"); err != nil {
		t.Errorf("root could not reach the metadata server: %v", err)
	}
}

// inNetns runs f on an OS thread of its own in the network namespace ns, as uid
// (for that thread alone, so that the sockets f opens are that user's); the
// thread is thrown away after.
func inNetns(t *testing.T, ns string, uid int, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		if uid != 0 {
			// The raw system call changes this thread's user alone.
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
				done <- fmt.Errorf("setresuid: %w", e)
				return
			}
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
