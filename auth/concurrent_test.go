package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv switches the test binary into a child that edits a keys file, for
// TestConcurrentEditsLoseNothing: BURLA_AUTH_TEST_HELPER=FILE:N adds N keys to
// FILE and prints each.
const helperEnv = "BURLA_AUTH_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helper(spec))
	}
	os.Exit(m.Run())
}

func helper(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	n, err := strconv.Atoi(spec[i+1:])
	if i < 0 || err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: want FILE:N\n", helperEnv, spec)
		return 2
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for range n {
		key, err := Add(spec[:i], RoleTenant, "proc")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(w, key)
	}
	return 0
}

// Processes and goroutines adding keys to one file at once, while others revoke
// keys added before, lose no update: at the end the file holds every key added
// and none revoked, and each revoke removed exactly the key it named.
func TestConcurrentEditsLoseNothing(t *testing.T) {
	const procs, perProc, goroutines, perGoroutine, revokes = 3, 15, 6, 10, 20
	path := filepath.Join(t.TempDir(), "keys.json")
	var doomed []string
	for range revokes {
		key, err := Add(path, RoleTenant, "doomed")
		if err != nil {
			t.Fatal(err)
		}
		doomed = append(doomed, key)
	}

	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	var children []*child
	for range procs {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
		c.cmd.Env = append(os.Environ(), helperEnv+"="+path+":"+strconv.Itoa(perProc))
		c.cmd.Stdout, c.cmd.Stderr = &c.out, os.Stderr
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, c)
	}

	var (
		mu    sync.Mutex
		added []string
		wg    sync.WaitGroup
	)
	errs := make(chan error, goroutines+revokes)
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				key, err := Add(path, RoleTenant, "goroutine")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				added = append(added, key)
				mu.Unlock()
			}
		})
	}
	for _, key := range doomed {
		wg.Go(func() {
			if n, err := Revoke(path, KeyID(key)); err != nil || n != 1 {
				errs <- fmt.Errorf("revoke %s: removed %d, %v", KeyID(key), n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
		sc := bufio.NewScanner(&c.out)
		for sc.Scan() {
			added = append(added, sc.Text())
		}
	}
	if want := procs*perProc + goroutines*perGoroutine; len(added) != want {
		t.Fatalf("%d keys added; want %d", len(added), want)
	}

	entries, err := List(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(added) {
		t.Errorf("the file holds %d keys; want the %d added", len(entries), len(added))
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, key := range added {
		if _, err := k.Lookup(key); err != nil {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d keys added are missing from the file", missing, len(added))
	}
	for _, key := range doomed {
		if _, err := k.Lookup(key); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("revoked key %s: %v", KeyID(key), err)
		}
	}
}

// Lookup, which the Temporal frontend asks on every call, refuses a revoked key
// within about a second of the revoke.
func TestLookupSeesARevokeWithinASecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	key, err := Add(path, RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Lookup(key); err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(path, KeyID(key)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, err := k.Lookup(key)
		if errors.Is(err, ErrUnknownKey) {
			t.Logf("Lookup refused the revoked key %v after the revoke", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("Lookup still admits a key revoked %v ago: %v", time.Since(start), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A revoke followed by an add leaves the file the same size, and on a file system
// whose clock ticks coarsely (ext4's every few milliseconds, FAT's every two
// seconds) with the same modification time: the reload must still see it.
func TestRewriteOfEqualSizeAndTimeIsSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if _, err := Add(path, RoleAdmin, ""); err != nil {
		t.Fatal(err)
	}
	old, err := Add(path, RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Lookup(old); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Revoke(path, KeyID(old)); err != nil {
		t.Fatal(err)
	}
	fresh, err := Add(path, RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// Both entries are of one role and tenant, with times kept to the second.
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() {
		t.Fatalf("the file was %d bytes and is %d; the test needs it the same", before.Size(), after.Size())
	}
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // Lookup looks at the file at most once a second
	if _, err := k.Lookup(old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("the revoked key still works: %v", err)
	}
	if _, err := k.Lookup(fresh); err != nil {
		t.Fatalf("the key added in its place: %v", err)
	}
}
