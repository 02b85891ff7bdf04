package process

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/runtime"
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
	spec := runtime.WorkerSpec{Node: "n", Slot: 3, Dir: filepath.Join(dir, "workers"),
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
