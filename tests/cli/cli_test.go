// Package cli runs the burla binary's management commands (cluster, keys,
// version) against a real `burla dev --keys` cluster, as a script would, and
// checks what scripts rely on: JSON lines on stdout when it is not a terminal, a
// table when it is, an error as a JSON line on stderr, and the exit statuses.
package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/cmd/burla/cli"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/wire"
)

// The exit statuses `burla -h` documents.
const (
	exitOK          = 0
	exitUsage       = 2
	exitNotFound    = 4
	exitDenied      = 5
	exitUnreachable = 6
)

var (
	dev                *clustertest.Dev
	adminKey, acmeKey  string
	unknownKey         string // well formed, in no keys file
	clusterDir, nobody string // nobody: a Temporal address where nothing listens
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "burla-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clusterDir = dir
	keys := filepath.Join(dir, "keys.json")
	if adminKey, err = auth.Add(keys, auth.RoleAdmin, ""); err == nil {
		if acmeKey, err = auth.Add(keys, auth.RoleTenant, "acme"); err == nil {
			unknownKey, err = auth.NewKey(auth.RoleAdmin, "")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli: keys:", err)
		return 1
	}
	// A port that was free a moment ago: nothing answers there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli:", err)
		return 1
	}
	nobody = l.Addr().String()
	l.Close()
	dev, err = clustertest.Start(context.Background(), clustertest.Options{Nodes: 1, CPUs: 1, Dir: dir, Keys: keys, APIKey: adminKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli: start cluster:", err)
		return 1
	}
	code := m.Run()
	if err := dev.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "cli: stop cluster:", err)
		code = 1
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "cli: cluster state kept in %s\n", dir)
	}
	return code
}

// result is one run of the burla binary.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("burla %s: exit %d after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// env is the environment of a burla command presenting key (none if empty) to
// the test cluster.
func env(key string) []string {
	return append(auth.ChildEnv(os.Environ(), key),
		"BURLA_TEMPORAL_ADDRESS="+dev.Addrs.Temporal, "BURLA_NAMESPACE="+dev.Addrs.Namespace, "BURLA_STORE_URL="+dev.Addrs.Store)
}

// burla runs the binary with key, its stdout a pipe, and waits for it.
func burla(t *testing.T, key string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dev.Binary, args...)
	cmd.Env = env(key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("burla %v: %v", args, err)
	}
	return result{args, stdout.String(), stderr.String(), cmd.ProcessState.ExitCode(), time.Since(start)}
}

// onTerminal runs the binary with key and its stdout a terminal (util-linux's
// script gives it a pseudo-terminal), and returns what it printed there.
func onTerminal(t *testing.T, key string, args ...string) result {
	t.Helper()
	quoted := []string{shellQuote(dev.Binary)}
	for _, a := range args {
		quoted = append(quoted, shellQuote(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", strings.Join(quoted, " "), "/dev/null")
	cmd.Env = env(key)
	cmd.Stdin = strings.NewReader("") // script copies its stdin to the terminal
	start := time.Now()
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("script burla %v: %v", args, err)
	}
	return result{args, strings.ReplaceAll(string(out), "\r\n", "\n"), "", cmd.ProcessState.ExitCode(), time.Since(start)}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// objects decodes each line of r's stdout as one JSON object, failing the test on
// a line that is not one.
func objects(t *testing.T, r result) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, l := range lines(r.stdout) {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("a stdout line is not a JSON object (%v): %q\n%v", err, l, r)
		}
		objs = append(objs, o)
	}
	return objs
}

// wantFailure checks that r exited with code and ended its stderr with the JSON
// line {"error":…,"code":code}, and printed nothing on stdout.
func wantFailure(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\n%v", r.code, code, r)
		return
	}
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("printed on stdout while failing\n%v", r)
	}
	ls := lines(r.stderr)
	if len(ls) == 0 {
		t.Errorf("nothing on stderr\n%v", r)
		return
	}
	var e struct {
		Error *string `json:"error"`
		Code  *int    `json:"code"`
	}
	last := ls[len(ls)-1]
	if err := json.Unmarshal([]byte(last), &e); err != nil || e.Error == nil || *e.Error == "" || e.Code == nil {
		t.Errorf(`stderr's last line is not {"error":…,"code":N}: %q (%v)`+"\n%v", last, err, r)
		return
	}
	if *e.Code != code {
		t.Errorf("stderr's JSON says code %d, exit %d\n%v", *e.Code, r.code, r)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"version", "--json"}} {
		r := burla(t, "", args...)
		if r.code != exitOK {
			t.Fatalf("exit %d\n%v", r.code, r)
		}
		objs := objects(t, r)
		if len(objs) != 1 {
			t.Fatalf("%d JSON lines, want 1\n%v", len(objs), r)
		}
		var v struct {
			Version  string `json:"version"`
			Protocol int    `json:"protocol"`
			Go       string `json:"go"`
		}
		json.Unmarshal([]byte(r.stdout), &v)
		// clustertest builds the binary without -X main.version, with this test's Go.
		if v.Version != "dev" || v.Protocol != wire.Version || v.Go != runtime.Version() {
			t.Errorf("got %+v; want version dev, protocol %d, go %s", v, wire.Version, runtime.Version())
		}
	}
	if r := onTerminal(t, "", "version"); r.code != exitOK || !strings.Contains(r.stdout, fmt.Sprintf("burla dev (protocol %d, %s)", wire.Version, runtime.Version())) {
		t.Errorf("on a terminal:\n%v", r)
	}
	wantFailure(t, burla(t, "", "version", "extra"), exitUsage)
	wantFailure(t, burla(t, "", "version", "--bogus"), exitUsage)
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"cluster"},
		{"cluster", "frobnicate"},
		{"cluster", "status", "--bogus"},
		{"cluster", "status", "extra-argument"},
		{"cluster", "set-standby", "--cpus", "0"},
		{"cluster", "up", "--nodes", "-1"},
		{"keys"},
		{"keys", "frobnicate"},
		{"keys", "ls", "--bogus"},
		{"keys", "add"},
		{"keys", "add", "--tenant", "Not_A_Tenant"},
		{"keys", "add", "--role", "emperor"},
		{"keys", "revoke"},
		{"keys", "revoke", "abc"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if len(args) > 0 && args[0] == "keys" {
				args = append(args, "--file", filepath.Join(t.TempDir(), "keys.json"))
			}
			wantFailure(t, burla(t, adminKey, args...), exitUsage)
		})
	}
	// -h is not a failure: it prints the command's usage and flags on stdout.
	for _, args := range [][]string{{"cluster", "status", "-h"}, {"keys", "ls", "-h"}, {"version", "-h"}} {
		if r := burla(t, "", args...); r.code != exitOK || !strings.Contains(r.stdout, "usage: burla") {
			t.Errorf("-h:\n%v", r)
		}
	}
}

// clusterState decodes r's stdout, which must be one JSON line holding a
// cluster's state.
func clusterState(t *testing.T, r result) control.ClusterState {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("exit %d\n%v", r.code, r)
	}
	objs := objects(t, r)
	if len(objs) != 1 {
		t.Fatalf("%d JSON lines, want 1\n%v", len(objs), r)
	}
	for _, f := range []string{"name", "standby", "nodes", "jobs", "lost"} {
		if _, ok := objs[0][f]; !ok {
			t.Errorf("the cluster's state lacks %q\n%v", f, r)
		}
	}
	var st control.ClusterState
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestClusterStatus(t *testing.T) {
	for _, args := range [][]string{{"cluster", "status"}, {"cluster", "status", "--json"}} {
		st := clusterState(t, burla(t, adminKey, args...))
		if st.Name != "default" || st.Standby.Nodes != 1 || st.Standby.CPUs != 1 || len(st.Nodes) != 1 {
			t.Errorf("%v: %+v; want cluster default with 1 standby node of 1 CPU", args, st)
		}
		for id, n := range st.Nodes {
			if n.ID != id || n.CPUs != 1 || n.State == "" {
				t.Errorf("node %s: %+v", id, n)
			}
		}
	}
	r := onTerminal(t, adminKey, "cluster", "status")
	if r.code != exitOK || !strings.Contains(r.stdout, "NODE") || !strings.Contains(r.stdout, "Standby") || strings.Contains(r.stdout, "{") {
		t.Errorf("on a terminal, want a table:\n%v", r)
	}
	if r := onTerminal(t, adminKey, "cluster", "status", "--json"); r.code != exitOK || !strings.HasPrefix(strings.TrimSpace(r.stdout), `{"name":"default"`) {
		t.Errorf("on a terminal with --json, want JSON:\n%v", r)
	}

	t.Run("no such cluster", func(t *testing.T) {
		wantFailure(t, burla(t, adminKey, "cluster", "status", "--cluster", "nosuch"), exitNotFound)
		wantFailure(t, burla(t, adminKey, "cluster", "restart", "--cluster", "nosuch"), exitNotFound)
		wantFailure(t, burla(t, adminKey, "cluster", "set-standby", "--cluster", "nosuch", "--nodes", "1", "--cpus", "1"), exitNotFound)
	})
	t.Run("refused", func(t *testing.T) {
		for name, key := range map[string]string{"a tenant's key": acmeKey, "no key": "", "an unknown key": unknownKey} {
			for _, args := range [][]string{{"cluster", "status"}, {"cluster", "restart"}} {
				r := burla(t, key, args...)
				t.Run(name+" "+args[1], func(t *testing.T) { wantFailure(t, r, exitDenied) })
			}
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		r := burla(t, adminKey, "cluster", "status", "--temporal", nobody)
		wantFailure(t, r, exitUnreachable)
		if r.took > 30*time.Second {
			t.Errorf("took %v to find nothing at %s", r.took, nobody)
		}
		if !strings.Contains(r.stderr, nobody) {
			t.Errorf("the error does not name the address:\n%v", r)
		}
	})
}

// TestClusterWatch watches a cluster of its own, changes it, and checks that the
// watch printed one JSON line per change and none while nothing changed.
func TestClusterWatch(t *testing.T) {
	const name = "watched"
	// Up returns once its one standby node is ready; then the cluster's state
	// stays as it is until it is changed.
	st := clusterState(t, burla(t, adminKey, "cluster", "up", "--cluster", name, "--nodes", "1", "--cpus", "1"))
	if st.Name != name || st.Standby.Nodes != 1 || len(st.Nodes) != 1 {
		t.Fatalf("up: %+v", st)
	}
	defer burla(t, adminKey, "cluster", "down", "--cluster", name)
	// A second up leaves the running cluster as it is, says so and what changes
	// it, and succeeds, so that a deployment can run it at every start.
	r := burla(t, adminKey, "cluster", "up", "--cluster", name, "--nodes", "3")
	if again := clusterState(t, r); again.Standby.Nodes != 1 || !strings.Contains(r.stderr, "up already: left as it is (set-standby changes it)") {
		t.Errorf("a second up of a running cluster: %+v\n%v", again.Standby, r)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dev.Binary, "cluster", "status", "--watch", "--cluster", name)
	cmd.Env = env(adminKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			got = append(got, sc.Text())
			mu.Unlock()
		}
	}()
	printed := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	waitLines := func(n int) []string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if ls := printed(); len(ls) >= n {
				return ls
			}
		}
		t.Fatalf("the watch printed %d lines in 30s, want %d:\n%s\nstderr:\n%s", len(printed()), n, strings.Join(printed(), "\n"), stderr.String())
		return nil
	}
	type change struct {
		Time *time.Time `json:"time"`
		control.ClusterState
	}
	decode := func(l string) change {
		t.Helper()
		var c change
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("a watch line is not a cluster's state (%v): %q", err, l)
		}
		if c.Time == nil || c.Time.IsZero() || c.Name != name {
			t.Fatalf("a watch line lacks the time or the cluster's name: %q", l)
		}
		return c
	}
	first := decode(waitLines(1)[0])
	if first.Standby.MaxNodes != 0 || len(first.Nodes) != 1 {
		t.Errorf("first line: standby %+v, %d nodes; want no bound on nodes, 1 node", first.Standby, len(first.Nodes))
	}
	// The watch asks every second; nothing changes, so it prints nothing more.
	time.Sleep(3500 * time.Millisecond)
	if ls := printed(); len(ls) != 1 {
		t.Fatalf("the watch printed %d lines while nothing changed, want 1:\n%s", len(ls), strings.Join(ls, "\n"))
	}
	// A bound on nodes changes the standby spec and leaves the node alone.
	clusterState(t, burla(t, adminKey, "cluster", "set-standby", "--cluster", name, "--nodes", "1", "--cpus", "1", "--max-nodes", "3"))
	second := decode(waitLines(2)[1])
	if second.Standby.MaxNodes != 3 || !second.Time.After(*first.Time) {
		t.Errorf("after set-standby: standby %+v at %v (first at %v), want at most 3 nodes, later", second.Standby, second.Time, first.Time)
	}
	// Ctrl-C ends a watch, and that is not a failure.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-readDone
	if err := cmd.Wait(); err != nil {
		t.Errorf("the watch after Ctrl-C: %v\nstderr:\n%s", err, stderr.String())
	}
	if ls := printed(); len(ls) != 2 {
		t.Errorf("the watch printed %d lines for one change, want 2:\n%s", len(ls), strings.Join(ls, "\n"))
	}

	// Once the cluster is down, changing it finds no such cluster.
	if r := burla(t, adminKey, "cluster", "down", "--cluster", name); r.code != exitOK {
		t.Fatalf("down:\n%v", r)
	}
	wantFailure(t, burla(t, adminKey, "cluster", "set-standby", "--cluster", name, "--nodes", "1", "--cpus", "1"), exitNotFound)
}

func TestKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	wantFailure(t, burla(t, "", "keys", "ls", "--file", file), exitNotFound)
	wantFailure(t, burla(t, "", "keys", "revoke", "0123456789ab", "--file", file), exitNotFound)

	type added struct {
		ID, Key, Role, Tenant, File string
	}
	add := func(args ...string) added {
		t.Helper()
		r := burla(t, "", append([]string{"keys", "add", "--file", file}, args...)...)
		if r.code != exitOK {
			t.Fatalf("exit %d\n%v", r.code, r)
		}
		if objs := objects(t, r); len(objs) != 1 {
			t.Fatalf("%d JSON lines, want 1\n%v", len(objs), r)
		}
		var a added
		json.Unmarshal([]byte(r.stdout), &a)
		if a.ID != auth.KeyID(a.Key) || a.File != file {
			t.Errorf("%+v: the ID is not the key's, or the file is not %s", a, file)
		}
		return a
	}
	acme := add("--tenant", "acme")
	if acme.Role != "tenant" || acme.Tenant != "acme" || !strings.HasPrefix(acme.Key, "bk_tenant_acme_") {
		t.Errorf("a tenant's key: %+v", acme)
	}
	admin := add("--role", "admin")
	if admin.Role != "admin" || admin.Tenant != "" || !strings.HasPrefix(admin.Key, "bk_admin_") {
		t.Errorf("an admin's key: %+v", admin)
	}
	// The keys in the file are the ones printed.
	entries, err := auth.List(file)
	if err != nil || len(entries) != 2 {
		t.Fatalf("the keys file holds %d keys (%v), want 2", len(entries), err)
	}

	ls := func() map[string]map[string]any {
		t.Helper()
		r := burla(t, "", "keys", "ls", "--file", file)
		if r.code != exitOK {
			t.Fatalf("exit %d\n%v", r.code, r)
		}
		byID := map[string]map[string]any{}
		for _, o := range objects(t, r) {
			id, _ := o["id"].(string)
			byID[id] = o
			if _, ok := o["created"]; !ok || o["role"] == nil {
				t.Errorf("ls line lacks created or role: %v", o)
			}
			if strings.Contains(r.stdout, "bk_") {
				t.Errorf("ls prints a key:\n%v", r)
			}
		}
		return byID
	}
	listed := ls()
	if len(listed) != 2 || listed[acme.ID]["tenant"] != "acme" || listed[admin.ID]["role"] != "admin" {
		t.Errorf("ls: %v; want %s (acme) and %s (admin)", listed, acme.ID, admin.ID)
	}
	if r := onTerminal(t, "", "keys", "ls", "--file", file); r.code != exitOK || !strings.Contains(r.stdout, "ID") || !strings.Contains(r.stdout, acme.ID) || strings.Contains(r.stdout, "{") {
		t.Errorf("on a terminal, want a table:\n%v", r)
	}

	// An ID that is neither key's.
	other := "ffffff"
	for strings.HasPrefix(acme.ID, other) || strings.HasPrefix(admin.ID, other) {
		other = "eeeeee"
	}
	wantFailure(t, burla(t, "", "keys", "revoke", other, "--file", file), exitNotFound)
	r := burla(t, "", "keys", "revoke", acme.ID, "--file", file)
	if r.code != exitOK {
		t.Fatalf("revoke: exit %d\n%v", r.code, r)
	}
	var rev struct {
		Revoked int    `json:"revoked"`
		ID      string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rev); err != nil || rev.Revoked != 1 || rev.ID != acme.ID {
		t.Errorf("revoke printed %q (%v), want {\"revoked\":1,\"id\":%q}", r.stdout, err, acme.ID)
	}
	if listed := ls(); len(listed) != 1 || listed[admin.ID] == nil {
		t.Errorf("after revoking acme's key, ls: %v; want only %s", listed, admin.ID)
	}
}

// The command run in process, as cmd/burla's main runs it (cli.Main), answers as
// the binary does: the same cluster, and for a cluster never up the same exit
// status and JSON error line.
func TestInProcessMainAnswersAsTheBinary(t *testing.T) {
	t.Setenv(auth.EnvKey, adminKey)
	inProcess := func(args ...string) result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		m := &cli.Main{Args: append(args, "--temporal", dev.Addrs.Temporal, "--namespace", dev.Addrs.Namespace),
			Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
		start := time.Now()
		code := m.Run(context.Background())
		return result{args, stdout.String(), stderr.String(), code, time.Since(start)}
	}
	in := clusterState(t, inProcess("cluster", "status", "-o", "json"))
	bin := clusterState(t, burla(t, adminKey, "cluster", "status", "-o", "json"))
	if in.Name != bin.Name || in.Standby.Nodes != bin.Standby.Nodes || len(in.Nodes) != len(bin.Nodes) {
		t.Errorf("in process: %+v\nthe binary: %+v", in, bin)
	}
	r := inProcess("cluster", "status", "-o", "json", "--cluster", "never-up")
	b := burla(t, adminKey, "cluster", "status", "-o", "json", "--cluster", "never-up")
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}
	if r.code != exitNotFound || b.code != exitNotFound || lastLine(r.stderr) != lastLine(b.stderr) {
		t.Errorf("a cluster never up, in process:\n%v\nthe binary:\n%v", r, b)
	}
}
