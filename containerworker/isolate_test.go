package containerworker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/runtime/process"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/tenantbox"
	"github.com/burla-temporal/burla/tenantbox/tenantboxtest"
)

var credentials = tenantboxtest.Credentials

// snoopReport is what a tenant's code could learn of the node, as snoop looks.
type snoopReport struct {
	UID        int      // the user it runs as
	ParentUID  int      // its worker's
	Env        []string // its environment
	NoNewPrivs bool
	// The errors reading its worker's /proc/PID/environ and opening its mem, and
	// whether they were refusals; "" where it could.
	ParentEnviron, ParentMem string
	EnvironDenied, MemDenied bool
	// WriteErrs are the errors writing a file in its HOME, TMPDIR and shared
	// directory, which it may write.
	WriteErrs []string
	// Found lists where it found one of the secrets it was given: its environment,
	// or that of any process it can read.
	Found []string
}

// snoop looks for secrets where a tenant's code would: its own environment, and
// the environment and memory of its worker, which holds the node's key, and of
// every other process on the machine it may read.
func snoop(secrets []string) snoopReport {
	r := snoopReport{UID: os.Getuid(), Env: os.Environ(), ParentUID: -1}
	ppid := os.Getppid()
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ppid)); err == nil {
		r.ParentUID = statusField(string(b), "Uid:")
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		r.NoNewPrivs = statusField(string(b), "NoNewPrivs:") == 1
	}
	if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ppid)); err != nil {
		r.ParentEnviron, r.EnvironDenied = err.Error(), errors.Is(err, fs.ErrPermission)
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/mem", ppid)); err != nil {
		r.ParentMem, r.MemDenied = err.Error(), errors.Is(err, fs.ErrPermission)
	} else {
		f.Close()
	}
	for _, dir := range []string{os.Getenv("HOME"), os.Getenv("TMPDIR"), burla.SharedDir()} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("probe-%d", os.Getpid())), []byte("x"), 0o644); err != nil {
			r.WriteErrs = append(r.WriteErrs, err.Error())
		}
	}
	environs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range environs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				r.Found = append(r.Found, p)
			}
		}
	}
	return r
}

// statusField reads the first number of a field of /proc/PID/status, or -1.
func statusField(status, field string) int {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, field); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, err := strconv.Atoi(f[0])
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

var _ = burla.Func("snoop", func(_ context.Context, secrets []string) (snoopReport, error) {
	return snoop(secrets), nil
})

// snoopCommand, set to 1 in its environment, makes the test binary a command
// that snoops: it reads the secrets on its stdin and prints its report.
const snoopCommand = "SNOOP_COMMAND"

func init() {
	if os.Getenv(snoopCommand) != "1" {
		return
	}
	var secrets []string
	if err := json.NewDecoder(os.Stdin).Decode(&secrets); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(snoop(secrets))
	os.Exit(0)
}

// The program registers these only in worker mode and only if it runs as root, or
// sees one of the node's credentials: an inspection that lists them failed to
// keep the node from the program (see TestInspectGivesTheProgramNothingOfTheNode).
var (
	_ = registerIf(os.Getenv("BURLA_WORKER") == "1" && os.Getuid() == 0, "ranasroot")
	_ = registerIf(os.Getenv("BURLA_WORKER") == "1" && sawCredential(), "sawcredential")
)

func registerIf(cond bool, name string) *burla.Function[int, int] {
	if !cond {
		return nil
	}
	return burla.Func(name, func(_ context.Context, x int) (int, error) { return x, nil })
}

func sawCredential() bool {
	for _, kv := range credentials {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := os.LookupEnv(name); ok {
			return true
		}
	}
	return false
}

// helperWorker, set to 1 in its environment, makes the test binary a container
// worker (TestHelperContainerWorker).
const helperWorker = "BURLA_TEST_CONTAINER_WORKER"

// helperRequest is one job for TestHelperContainerWorker to run.
type helperRequest struct {
	Spec   job.Spec
	Binary string
	Env    map[string]string // the job's variables
	Input  []byte            // its one input
}

// TestHelperContainerWorker is not a test: it is a container worker, started as
// the node agent starts one, by a runtime, with the node's key in its environment.
// It isolates itself as `burla container-worker` does, reads a helperRequest on
// stdin, runs the job's one input, and prints the results on stdout.
func TestHelperContainerWorker(t *testing.T) {
	if os.Getenv(helperWorker) != "1" {
		t.Skip("the container worker of TestTenantCodeGetsNothingOfTheNode")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper container worker:", err)
		os.Exit(2)
	}
	if err := tenantbox.Isolate(); err != nil {
		fail(err)
	}
	var req helperRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blobs := &memblob.Store{}
	if len(req.Env) > 0 {
		data, _ := json.Marshal(req.Env)
		if err := blobs.Put(ctx, job.EnvKey(req.Spec.ID), bytes.NewReader(data)); err != nil {
			fail(err)
		}
		req.Spec.Env = slices.Sorted(maps.Keys(req.Env))
	}
	s := &memStore{chunks: []store.Chunk{{Items: []store.Item{{Data: req.Input}}}}}
	w := containerworker.New(containerworker.Config{Store: s, Blobs: blobs, SharedDir: os.Getenv(job.EnvSharedDir)})
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, req.Spec, req.Binary) }()
	for done := false; !done; {
		select {
		case err := <-errc:
			if err == nil {
				err = errors.New("the job ended before its input was done")
			}
			fail(err)
		case <-time.After(10 * time.Millisecond):
		}
		s.mu.Lock()
		done = s.done == 1
		s.mu.Unlock()
	}
	cancel()
	if err := <-errc; err != nil {
		fail(err)
	}
	json.NewEncoder(os.Stdout).Encode(s.results)
	os.Exit(0)
}

// A tenant's program, or command, finds none of the node's keys and credentials:
// not in its environment, not in its worker's environment or memory, which hold
// the node's key, and not in any process's it can read; it does not run as root,
// and cannot become root; and it can write its scratch and shared directories. The
// worker is a process of its own, with the node's key in its environment, as the
// node agent starts one on the process runtime.
func TestTenantCodeGetsNothingOfTheNode(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	mark := hex.EncodeToString(nonce[:])
	// The worker's environment: the node's credentials, each with a value of its own.
	var nodeEnv, secrets []string
	for _, kv := range credentials {
		name, value, _ := strings.Cut(kv, "=")
		nodeEnv = append(nodeEnv, name+"="+value+"-"+mark)
		secrets = append(secrets, value+"-"+mark)
	}
	workers, err := process.WorkersDir(filepath.Join(t.TempDir(), "workers"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(workers) })
	input, _ := json.Marshal(secrets)
	jobEnv := map[string]string{"GREETING": "hello", "API_TOKEN": "the-job's-own-" + mark}
	for slot, c := range []struct {
		name string
		spec func(program string) job.Spec
	}{
		{"program", func(string) job.Spec { return spec("snoop") }},
		{"command", func(program string) job.Spec {
			sp := spec("")
			sp.Command = []string{program}
			return sp
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			w, err := process.Runtime{}.Start(ctx, runtime.WorkerSpec{Node: "n", Slot: slot, Dir: workers,
				Argv: []string{exe, "-test.run=^TestHelperContainerWorker$"},
				Env:  append(slices.Clone(nodeEnv), helperWorker+"=1")})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				w.Kill()
				<-w.Done()
			}()
			program, err := w.Provide(exe)
			if err != nil {
				t.Fatal(err)
			}
			req := helperRequest{Spec: c.spec(program), Binary: program, Env: maps.Clone(jobEnv), Input: input}
			if c.name == "command" {
				req.Env[snoopCommand] = "1"
			}
			go json.NewEncoder(w.Stdin()).Encode(req)
			out := bufio.NewScanner(w.Stdout())
			out.Buffer(nil, 1<<20)
			if !out.Scan() {
				t.Fatalf("the worker printed no results (%v); see its stderr", out.Err())
			}
			var results []store.Result
			if err := json.Unmarshal(out.Bytes(), &results); err != nil || len(results) != 1 {
				t.Fatalf("worker's results %s (%v); want one", out.Bytes(), err)
			}
			if e := results[0].Err; e != nil {
				t.Fatalf("the call failed: %s %s\n%s", e.Kind, e.Message, e.Stack)
			}
			output := results[0].Output
			if c.name == "command" { // the command's stdout, as a JSON string
				var text string
				if err := json.Unmarshal(output, &text); err != nil {
					t.Fatal(err)
				}
				output = []byte(text)
			}
			var r snoopReport
			if err := json.Unmarshal(output, &r); err != nil {
				t.Fatalf("report %s: %v", output, err)
			}
			checkReport(t, r, secrets, jobEnv, workers)
		})
	}
}

func checkReport(t *testing.T, r snoopReport, secrets []string, jobEnv map[string]string, workers string) {
	t.Helper()
	if len(r.Found) > 0 {
		t.Errorf("a secret of the node's is in %q", r.Found)
	}
	env := map[string]string{}
	for _, kv := range r.Env {
		name, value, _ := strings.Cut(kv, "=")
		env[name] = value
		for _, s := range secrets {
			if strings.Contains(value, s) {
				t.Errorf("the tenant's environment holds a secret of the node's: %s", kv)
			}
		}
		if strings.HasPrefix(name, "BURLA_") && name != job.EnvSharedDir && name != "BURLA_WORKER" && name != "BURLA_MARKER" {
			t.Errorf("the tenant's environment holds %s", kv)
		}
	}
	for name, value := range jobEnv {
		if env[name] != value {
			t.Errorf("the job's %s is %q in its environment; want %q", name, env[name], value)
		}
	}
	if home := env["HOME"]; home == "" || home != env["TMPDIR"] || !strings.HasPrefix(home, workers+"/") {
		t.Errorf("HOME %q, TMPDIR %q; want both the worker's scratch directory, under %s", home, env["TMPDIR"], workers)
	}
	if env[job.EnvSharedDir] == "" {
		t.Errorf("no %s in the tenant's environment", job.EnvSharedDir)
	}
	if len(r.WriteErrs) > 0 {
		t.Errorf("the tenant cannot write its own directories: %q", r.WriteErrs)
	}
	if !r.EnvironDenied {
		t.Errorf("the worker's /proc/PID/environ: %q; want it refused", r.ParentEnviron)
	}
	if !r.MemDenied {
		t.Errorf("the worker's /proc/PID/mem: %q; want it refused", r.ParentMem)
	}
	if !r.NoNewPrivs {
		t.Error("the tenant's process may gain privileges by exec (no_new_privs is not set)")
	}
	if os.Geteuid() == 0 {
		// The agent (here, the test) is root: neither the worker nor the call is.
		// Each worker has a user of its own (the process runtime gives it one).
		if r.UID != r.ParentUID || r.UID < 0x10000000 {
			t.Errorf("the call ran as uid %d, its worker as %d; want both the worker's own user", r.UID, r.ParentUID)
		}
	}
}

// The control plane's inspector runs a tenant's program as a worker would: the
// program sees none of the control plane's credentials, and, where the control
// plane is root, does not run as root, even when it was fetched where only root
// may reach it.
func TestInspectGivesTheProgramNothingOfTheNode(t *testing.T) {
	for _, kv := range credentials {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Where the control plane keeps programs: its own.
	dir := filepath.Join(t.TempDir(), "envs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(dir, "program")
	b, err := os.ReadFile(exe)
	if err == nil {
		err = os.WriteFile(program, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fns, goos, goarch, err := containerworker.Inspect(ctx, program)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fns, "snoop") || goos == "" || goarch == "" {
		t.Errorf("Inspect = %q, %s/%s; want the test's functions", fns, goos, goarch)
	}
	if slices.Contains(fns, "sawcredential") {
		t.Error("the inspected program saw a credential of the control plane's")
	}
	if slices.Contains(fns, "ranasroot") {
		t.Error("the inspected program ran as root")
	}
}
