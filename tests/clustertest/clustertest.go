// Package clustertest starts a real `burla dev` cluster as a child process, for the
// end-to-end tests and benchmarks: the same binary, ports and processes a user gets.
package clustertest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

// Options size the cluster.
type Options struct {
	Nodes int
	CPUs  int
	// RAMMB is each node's memory (burla dev --ram-mb); zero is burla dev's default.
	RAMMB int
	// Dir is the cluster's data directory; empty makes a temporary one.
	Dir string
	// Provider is "local" (default) or "docker".
	Provider string
	// Runtime is "process" (default) or "docker".
	Runtime string
	// Envs are images whose workers nodes keep warm (docker runtime).
	Envs []string
	// StoreURL, if set, is the data plane instead of the embedded NATS server
	// (burla dev --store); the child inherits this process's environment, so
	// FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST reach it.
	StoreURL string
	// Keys, if set, is a keys file: the cluster asks for API keys (burla dev
	// --keys), and APIKey is the key Dev.Cluster presents.
	Keys, APIKey string
	// SuggestContinueAsNew is burla dev --suggest-continue-as-new: the history
	// length at which Temporal suggests continuing as new (0: its default).
	SuggestContinueAsNew int
	// MaxNodes is burla dev --max-nodes (0: Nodes).
	MaxNodes int
	// CollectEvery is burla dev --collect-every (0: its default).
	CollectEvery time.Duration
	// Retention is burla dev --retention (0: its default).
	Retention time.Duration
	// TenantMaxStoreMB is burla dev --tenant-max-store-mb (with Keys; 0: no bound).
	TenantMaxStoreMB int
	// Host is the address a Split cluster's servers listen on and every part
	// dials (default 127.0.0.1): an address of the machine's that a network
	// namespace can reach too.
	Host string
	// NodeWrapper is a Split cluster's control-plane --local-node-wrapper.
	NodeWrapper string
}

// Addresses are what `burla dev --ready-file` writes. (They are declared here rather
// than imported from devcluster so that test programs do not link a Temporal server.)
type Addresses struct {
	Temporal  string `json:"temporal"`
	Namespace string `json:"namespace"`
	UI        string `json:"ui"`
	Store     string `json:"store"`
	NATS      string `json:"nats"`
	Metrics   string `json:"metrics"`
	Dashboard string `json:"dashboard"`
}

// Dev is a running `burla dev`.
type Dev struct {
	Dir     string
	Addrs   Addresses
	Cluster *burla.Cluster
	Binary  string // the burla binary
	cmd     *exec.Cmd
	exited  chan error
	ownDir  bool // Start made Dir
	// Keep, set before Stop, keeps Dir (a test failed). Otherwise a Stop that
	// succeeds removes the Dir that Start made, unless BURLA_KEEP_CLUSTER is set.
	Keep bool
}

// Build compiles cmd/burla into dir and returns its path.
func Build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "burla")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/burla")
	cmd.Dir = root
	// Static, so that the same binary runs FROM scratch on the docker provider.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build burla: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the burla module")
	}
	return filepath.Dir(mod), nil
}

// Start builds burla and starts `burla dev` on free ports, returning once it is ready.
// A Start that fails removes the directory it made, unless BURLA_KEEP_CLUSTER is set.
func Start(ctx context.Context, o Options) (_ *Dev, err error) {
	made := o.Dir == ""
	if made {
		dir, err := os.MkdirTemp("", "burla-e2e-")
		if err != nil {
			return nil, err
		}
		o.Dir = dir
		defer func() {
			if err == nil {
				return
			}
			if os.Getenv("BURLA_KEEP_CLUSTER") != "" {
				fmt.Fprintf(os.Stderr, "the cluster's state and logs are kept in %s\n", dir)
				return
			}
			os.RemoveAll(dir)
		}()
	}
	bin, err := Build(o.Dir)
	if err != nil {
		return nil, err
	}
	d := &Dev{Dir: o.Dir, Binary: bin, exited: make(chan error, 1), ownDir: made}
	ready := filepath.Join(o.Dir, "ready.json")
	os.Remove(ready)
	logf, err := os.Create(filepath.Join(o.Dir, "dev.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "dev",
		"--data-dir", filepath.Join(o.Dir, "data"),
		"--nodes", strconv.Itoa(o.Nodes), "--cpus", strconv.Itoa(o.CPUs),
		"--temporal-port", "0", "--ui-port", "0", "--nats-port", "0", "--metrics-port", "0", "--dashboard-port", "0",
		"--provider", cmp.Or(o.Provider, "local"),
		"--runtime", cmp.Or(o.Runtime, "process"),
		"--ready-file", ready)
	if o.StoreURL != "" {
		d.cmd.Args = append(d.cmd.Args, "--store", o.StoreURL)
	}
	if o.RAMMB > 0 {
		d.cmd.Args = append(d.cmd.Args, "--ram-mb", strconv.Itoa(o.RAMMB))
	}
	if o.Keys != "" {
		d.cmd.Args = append(d.cmd.Args, "--keys", o.Keys)
	}
	if o.MaxNodes > 0 {
		d.cmd.Args = append(d.cmd.Args, "--max-nodes", strconv.Itoa(o.MaxNodes))
	}
	if o.CollectEvery > 0 {
		d.cmd.Args = append(d.cmd.Args, "--collect-every", o.CollectEvery.String())
	}
	if o.TenantMaxStoreMB > 0 {
		d.cmd.Args = append(d.cmd.Args, "--tenant-max-store-mb", strconv.Itoa(o.TenantMaxStoreMB))
	}
	if o.Retention > 0 {
		d.cmd.Args = append(d.cmd.Args, "--retention", o.Retention.String())
	}
	if o.SuggestContinueAsNew > 0 {
		d.cmd.Args = append(d.cmd.Args, "--suggest-continue-as-new", strconv.Itoa(o.SuggestContinueAsNew))
	}
	for _, env := range o.Envs {
		d.cmd.Args = append(d.cmd.Args, "--env", env)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start burla dev: %w", err)
	}
	go func() { d.exited <- d.cmd.Wait(); logf.Close() }()
	deadline := time.After(3 * time.Minute)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			if err := json.Unmarshal(b, &d.Addrs); err != nil {
				return nil, err
			}
			break
		}
		select {
		case err := <-d.exited:
			return nil, fmt.Errorf("burla dev exited before it was ready (%v):\n%s", err, d.Log())
		case <-deadline:
			d.cmd.Process.Kill()
			return nil, fmt.Errorf("burla dev not ready after 3 minutes:\n%s", d.Log())
		case <-ctx.Done():
			d.cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.Cluster, err = d.Dial(ctx, o.APIKey)
	if err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Dial connects to the cluster with key (none if empty).
func (d *Dev) Dial(ctx context.Context, key string) (*burla.Cluster, error) {
	return burla.Dial(ctx, burla.Config{TemporalAddress: d.Addrs.Temporal, Namespace: d.Addrs.Namespace, StoreURL: d.Addrs.Store, APIKey: key})
}

// Log is what burla dev has printed so far.
func (d *Dev) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dev.log"))
	return string(b)
}

// Processes returns the PIDs of the cluster's processes whose command line contains
// every one of words (for example "container-worker").
func (d *Dev) Processes(words ...string) []int { return processes(d.Dir, words) }

// processes returns the PIDs of the processes, other than this one, whose command
// lines contain dir and every one of words.
func processes(dir string, words []string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		all := true
		for _, w := range words {
			all = all && bytes.Contains(cmdline, []byte(w))
		}
		if all && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Stop interrupts burla dev as Ctrl-C would, waits for it, and reports an error if
// it fails to stop within 30s or leaves any process of the cluster behind.
func (d *Dev) Stop() error {
	if d.Cluster != nil {
		d.Cluster.Close()
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("burla dev exited with %v after Ctrl-C:\n%s", err, d.Log())
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		return fmt.Errorf("burla dev did not stop within 30s of Ctrl-C")
	}
	// Children die with their parents; give the kernel a moment to reap them.
	var left []int
	for range 50 {
		if left = d.Processes(); len(left) == 0 {
			if d.ownDir && !d.Keep && os.Getenv("BURLA_KEEP_CLUSTER") == "" {
				os.RemoveAll(d.Dir)
			} else if d.ownDir {
				fmt.Fprintf(os.Stderr, "the cluster's state and logs are kept in %s\n", d.Dir)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("burla dev left processes behind: %v", left)
}

// OpenDir returns a new directory that every user may search and read, removed
// when t ends: for files a test shares with functions on a local node, which run
// as a user of their own when the node's agent is root (t.TempDir is the test
// user's alone).
func OpenDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "burla-open-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
