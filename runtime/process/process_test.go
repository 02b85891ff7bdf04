package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/tenantbox"
)

// Each worker runs in a scratch directory of its own (its working directory and
// TMPDIR), sees only the program it was given, and its directory goes when it exits.
func TestWorkerHasItsOwnDirectory(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "bin")
	os.Mkdir(cache, 0o700)
	progA, progB := filepath.Join(cache, "aaaa"), filepath.Join(cache, "bbbb")
	os.WriteFile(progA, []byte("program a"), 0o755)
	os.WriteFile(progB, []byte("program b"), 0o755)
	workers, err := WorkersDir(filepath.Join(dir, "workers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(workers) })
	spec := runtime.WorkerSpec{Node: "n", Slot: 3, Dir: workers,
		Argv: []string{"/bin/sh", "-c", `pwd; echo "$TMPDIR"; echo left > file; cat >/dev/null`}}
	var scratch []string
	for range 2 {
		w, err := Runtime{}.Start(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		out := bufio.NewScanner(w.Stdout())
		var cwd, tmp string
		if out.Scan() {
			cwd = out.Text()
		}
		if out.Scan() {
			tmp = out.Text()
		}
		if cwd == "" || cwd != tmp || !strings.HasPrefix(cwd, spec.Dir+"/") {
			t.Fatalf("worker's working directory %q and TMPDIR %q; want one directory of its own under %s", cwd, tmp, spec.Dir)
		}
		scratch = append(scratch, cwd)

		a, err := w.Provide(progA)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(a); err != nil || string(b) != "program a" || filepath.Dir(a) == cache {
			t.Fatalf("provided program at %s reads %q, %v; want program a, outside the cache", a, b, err)
		}
		b, err := w.Provide(progB)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(a); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("program a is still provided after program b: %v", err)
		}
		if entries, _ := os.ReadDir(filepath.Dir(b)); len(entries) != 1 {
			t.Errorf("program directory holds %d files; want the one program", len(entries))
		}
		w.Stdin().Close()
		select {
		case <-w.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("worker did not exit when its stdin closed")
		}
		if _, err := os.Stat(cwd); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("worker's directory %s left after it exited (%v)", cwd, err)
		}
		if _, err := os.Stat(progB); err != nil {
			t.Errorf("the cache's program went with the worker: %v", err)
		}
	}
	if scratch[0] == scratch[1] {
		t.Errorf("two workers ran in the same directory %s", scratch[0])
	}
}

// A worker's directory is removed even when the function left parts of it
// unwritable.
func TestWorkerDirRemovesUnwritableDirectories(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root removes unwritable directories anyway: this checks the fallback for an agent that is not root")
	}
	d, err := runtime.NewWorkerDir(runtime.WorkerSpec{Dir: t.TempDir()}, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(d.Path, "scratch", "locked")
	if err := os.MkdirAll(filepath.Join(locked, "inner"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(locked, "inner", "f"), []byte("x"), 0o400)
	os.Chmod(filepath.Join(locked, "inner"), 0o500)
	os.Chmod(locked, 0o000)
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left: %v", d.Path, err)
	}
}

// An agent that is root keeps its workers' directories where the tenants' user can
// reach them: in the directory it made, opened to be searched, when that user can
// reach it, and otherwise in one of its own, the same for the same directory, in
// the system's temporary directory. An agent that is not root keeps them where it
// said.
func TestWorkersDir(t *testing.T) {
	if !Isolates() {
		dir := filepath.Join(t.TempDir(), "workers")
		if got, err := WorkersDir(dir); err != nil || got != dir {
			t.Fatalf("WorkersDir(%s) = %s, %v; want it unchanged", dir, got, err)
		}
		return
	}
	open, err := os.MkdirTemp("", "burla-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	os.Chmod(open, 0o755)
	dir := filepath.Join(open, "workers")
	os.Mkdir(dir, 0o700)
	if got, err := WorkersDir(dir); err != nil || got != dir {
		t.Fatalf("WorkersDir(%s) = %s, %v; want it, since uid %d reaches it", dir, got, err, tenantbox.TenantUID)
	}
	checkMode(t, dir, 0o711)

	closed := filepath.Join(t.TempDir(), "closed") // t.TempDir's parent has mode 0700
	os.Mkdir(closed, 0o700)
	dir = filepath.Join(closed, "workers")
	got, err := WorkersDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(got) })
	if filepath.Dir(got) != os.TempDir() {
		t.Fatalf("WorkersDir(%s) = %s; want a directory in %s, since uid %d cannot reach %s", dir, got, os.TempDir(), tenantbox.TenantUID, closed)
	}
	checkMode(t, got, 0o711)
	if again, err := WorkersDir(dir); err != nil || again != got {
		t.Errorf("WorkersDir(%s) again = %s, %v; want %s again, for a restarted agent to clear", dir, again, err, got)
	}
}

// On an agent that is root, a worker's scratch and shared directories are the
// tenants' user's, and its program is theirs to run and not to change.
func TestIsolatedWorkerDirectory(t *testing.T) {
	if !Isolates() {
		t.Skip("only an agent that is root runs its workers as another user")
	}
	cache := filepath.Join(t.TempDir(), "bin")
	os.Mkdir(cache, 0o700)
	prog := filepath.Join(cache, "prog")
	os.WriteFile(prog, []byte("#!/bin/sh\necho ran\n"), 0o755)
	workers, err := WorkersDir(filepath.Join(t.TempDir(), "workers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(workers) })
	w, err := Runtime{}.Start(context.Background(), runtime.WorkerSpec{Node: "n", Dir: workers,
		Argv: []string{"/bin/sh", "-c", `echo "$TMPDIR"; echo "$BURLA_SHARED_DIR"; echo "$BURLA_TENANT_UID"; cat >/dev/null`}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		w.Stdin().Close()
		<-w.Done()
	}()
	out := bufio.NewScanner(w.Stdout())
	var dirs []string
	for range 2 {
		out.Scan()
		dirs = append(dirs, out.Text())
	}
	out.Scan()
	uid, err := strconv.ParseUint(out.Text(), 10, 32)
	if err != nil || uid < 0x10000000 {
		t.Fatalf("the worker's user %q: want one of its own (%v)", out.Text(), err)
	}
	path, err := w.Provide(prog)
	if err != nil {
		t.Fatal(err)
	}
	// What the worker and its calls do, as that user.
	asTenant := func(script string) (string, error) {
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	for _, d := range dirs {
		if out, err := asTenant("echo x > " + d + "/probe"); err != nil {
			t.Errorf("uid %d cannot write %s: %v %s", uid, d, err, out)
		}
	}
	if out, err := asTenant(path); err != nil || out != "ran" {
		t.Errorf("uid %d ran its program: %q, %v; want it to run", uid, out, err)
	}
	if out, err := asTenant("echo changed >> " + path); err == nil {
		t.Errorf("uid %d changed its program, the cache's file: %s", uid, out)
	}
	if out, err := asTenant("ls " + filepath.Dir(filepath.Dir(path))); err == nil {
		t.Errorf("uid %d listed its worker's directory: %s", uid, out)
	}
	if out, err := asTenant("cat " + prog); err == nil {
		t.Errorf("uid %d read the cache: %s", uid, out)
	}
}

func checkMode(t *testing.T, dir string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s has mode %v; want %v", dir, fi.Mode().Perm(), want)
	}
}

// On an agent that is root, two workers run as two users, and what a worker's user
// leaves behind (a process in a session of its own, a file in /tmp) is gone once
// the worker is: nothing of one job survives to watch or feed the next.
func TestWorkerUserIsItsOwnAndReaped(t *testing.T) {
	if !Isolates() {
		t.Skip("only an agent that is root runs its workers as another user")
	}
	workers, err := WorkersDir(filepath.Join(t.TempDir(), "workers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(workers) })
	mark := fmt.Sprintf("burla-leftover-%d", time.Now().UnixNano())
	start := func(slot int) (runtime.Worker, uint64) {
		// The worker leaves a file in /tmp and a process in a session of its own.
		w, err := Runtime{}.Start(context.Background(), runtime.WorkerSpec{Node: "n", Slot: slot, Dir: workers,
			Argv: []string{"/bin/sh", "-c", `echo "$BURLA_TENANT_UID"; cat >/dev/null`}})
		if err != nil {
			t.Fatal(err)
		}
		out := bufio.NewScanner(w.Stdout())
		out.Scan()
		uid, err := strconv.ParseUint(out.Text(), 10, 32)
		if err != nil {
			t.Fatalf("the worker's user %q: %v", out.Text(), err)
		}
		return w, uid
	}
	w1, uid1 := start(0)
	w2, uid2 := start(1)
	if uid1 == uid2 {
		t.Fatalf("two workers run as the same user %d", uid1)
	}
	leftover := filepath.Join(os.TempDir(), mark)
	cmd := exec.Command("/bin/sh", "-c", "touch "+leftover+"; exec sleep 600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(uid1), Gid: uint32(uid1), Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(leftover); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("the leftover file never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w1.Stdin().Close()
	<-w1.Done()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Error("a process of the worker's user outlived the worker")
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		os.Remove(leftover)
		t.Errorf("the worker's file in %s outlived it: %v", os.TempDir(), err)
	}
	w2.Stdin().Close()
	<-w2.Done()
}
