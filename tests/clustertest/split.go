package clustertest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/burla-temporal/burla/control"
	burla "github.com/burla-temporal/burla/sdk"
)

// The parts of a Split cluster, each its own process.
const (
	Temporal     = "temporal-server"
	NATS         = "nats-server"
	ControlPlane = "control-plane"
)

// Split is a cluster whose parts run as separate processes, as a self-hosted
// deployment runs them: `burla temporal-server` (SQLite in a file), `burla
// nats-server` (streams on disk), `burla control-plane --local-nodes` (the control
// plane's Temporal worker, whose node agents outlive it), and the node agents and
// their container workers. Each part can be killed and started again on the same
// port with the same state, which `burla dev`, one process, cannot offer.
type Split struct {
	Dir     string
	Binary  string
	Addrs   Addresses
	Cluster *burla.Cluster
	nodes   int
	cpus    int
	parts   map[string]*part
}

type part struct {
	args   []string
	ready  string // the ready file, if the part writes one
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartSplit builds burla, starts each part of a cluster of o.Nodes nodes of o.CPUs
// CPUs, brings the cluster up with `burla cluster up`, and returns once its standby
// nodes are ready.
func StartSplit(ctx context.Context, o Options) (_ *Split, err error) {
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "burla-split-"); err != nil {
			return nil, err
		}
	}
	bin, err := Build(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Split{Dir: o.Dir, Binary: bin, nodes: o.Nodes, cpus: o.CPUs, parts: map[string]*part{}}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	host := cmp.Or(o.Host, "127.0.0.1")
	tport, nport := freePort(host), freePort(host)
	s.Addrs = Addresses{Temporal: net.JoinHostPort(host, strconv.Itoa(tport)), Namespace: "default",
		Store: "nats://" + net.JoinHostPort(host, strconv.Itoa(nport))}
	s.Addrs.NATS = s.Addrs.Store
	s.parts[Temporal] = &part{ready: filepath.Join(o.Dir, "temporal.json"), args: []string{Temporal,
		"--data-dir", filepath.Join(o.Dir, "temporal"), "--host", host, "--port", strconv.Itoa(tport), "--ui-port", "-1"}}
	s.parts[NATS] = &part{ready: filepath.Join(o.Dir, "nats.json"), args: []string{NATS,
		"--data-dir", filepath.Join(o.Dir, "nats"), "--host", host, "--port", strconv.Itoa(nport)}}
	s.parts[ControlPlane] = &part{args: []string{ControlPlane,
		"--temporal", s.Addrs.Temporal, "--store", s.Addrs.Store,
		"--local-nodes", filepath.Join(o.Dir, "nodes"), "--data-dir", filepath.Join(o.Dir, "control"),
		"--metrics-addr", "127.0.0.1:0", "--orphan-sweep", "0", "--local-node-wrapper", o.NodeWrapper}}
	for _, name := range []string{NATS, Temporal, ControlPlane} {
		if _, err := s.Start(ctx, name); err != nil {
			return nil, err
		}
	}
	up := exec.CommandContext(ctx, bin, "cluster", "up", "--temporal", s.Addrs.Temporal,
		"--nodes", strconv.Itoa(o.Nodes), "--cpus", strconv.Itoa(o.CPUs), "--provider", "local", "--timeout", "2m",
		// As burla dev does: on one machine, more nodes than standby only compete.
		"--max-nodes", strconv.Itoa(o.Nodes))
	if out, err := up.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("burla cluster up: %v\n%s\n%s", err, out, s.Log(ControlPlane))
	}
	s.Cluster, err = burla.Dial(ctx, burla.Config{TemporalAddress: s.Addrs.Temporal, Namespace: s.Addrs.Namespace, StoreURL: s.Addrs.Store})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func freePort(host string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts the named part (again) and returns how long it took to be ready:
// its ready file for the servers, a cluster status answered for the control plane.
func (s *Split) Start(ctx context.Context, name string) (time.Duration, error) {
	p := s.parts[name]
	if p.ready != "" {
		os.Remove(p.ready)
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	args := p.args
	if p.ready != "" {
		args = append(args[:len(args):len(args)], "--ready-file", p.ready)
	}
	start := time.Now()
	p.cmd = exec.Command(s.Binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start %s: %w", name, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); logf.Close(); close(exited) }(p.cmd, p.exited)
	deadline := time.After(3 * time.Minute)
	for !s.ready(ctx, name) {
		select {
		case <-p.exited:
			return 0, fmt.Errorf("%s exited before it was ready:\n%s", name, s.Log(name))
		case <-deadline:
			return 0, fmt.Errorf("%s not ready after 3 minutes:\n%s", name, s.Log(name))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

func (s *Split) ready(ctx context.Context, name string) bool {
	p := s.parts[name]
	if p.ready != "" {
		_, err := os.Stat(p.ready)
		return err == nil
	}
	// The control plane is ready once its banner is out and its Temporal worker has
	// polled: a workflow query needs a worker to answer it.
	if !strings.Contains(s.Log(name), "burla control plane:") {
		return false
	}
	if s.Cluster == nil {
		return true // before the cluster is up there is nothing to query
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := s.Cluster.Temporal().QueryWorkflow(qctx, control.ClusterWorkflowID(control.DefaultCluster), "", control.QueryStatus)
	return err == nil
}

// Kill sends SIGKILL to the named part and waits for it to be gone.
func (s *Split) Kill(name string) error {
	p := s.parts[name]
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", name)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	<-p.exited
	return nil
}

// Restart kills the named part with SIGKILL, starts it again on the same port with
// the same state, and returns how long it was gone.
func (s *Split) Restart(ctx context.Context, name string) (time.Duration, error) {
	start := time.Now()
	if err := s.Kill(name); err != nil {
		return 0, err
	}
	if _, err := s.Start(ctx, name); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Log is what the named part has printed so far.
func (s *Split) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, name+".log"))
	return string(b)
}

// Processes returns the PIDs of the cluster's processes (its parts, node agents and
// container workers) whose command lines contain every one of words.
func (s *Split) Processes(words ...string) []int { return processes(s.Dir, words) }

// PID is the named part's process ID.
func (s *Split) PID(name string) int { return s.parts[name].cmd.Process.Pid }

// Stop stops the control plane, then the nodes it left running (they outlive it by
// design), then the servers, and reports any process of the cluster left behind.
func (s *Split) Stop() error {
	if s.Cluster != nil {
		s.Cluster.Close()
	}
	var errs []error
	stop := func(name string) {
		p := s.parts[name]
		if p == nil || p.cmd == nil {
			return
		}
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
			errs = append(errs, fmt.Errorf("%s did not stop within 30s of Ctrl-C", name))
		}
	}
	stop(ControlPlane)
	for _, pid := range s.Processes("node-agent") {
		syscall.Kill(-pid, syscall.SIGKILL) // the agent's session: it and its workers
	}
	stop(Temporal)
	stop(NATS)
	var left []int
	for range 50 {
		if left = s.Processes(); len(left) == 0 {
			return errors.Join(errs...)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return errors.Join(append(errs, fmt.Errorf("the cluster left processes behind: %v", left))...)
}

// PeakRSS returns the peak resident memory (VmHWM) of each running process of the
// cluster, keyed by its burla command (temporal-server, node-agent, …) or "user
// program", the largest where several share a key.
func (s *Split) PeakRSS() map[string]int64 {
	peaks := map[string]int64{}
	for _, pid := range s.Processes() {
		cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmdline, []byte{0})
		if len(args) < 1 {
			continue
		}
		args = append(args, nil)
		name := string(args[1])
		switch name {
		case Temporal, NATS, ControlPlane, "node-agent", "container-worker":
		default:
			name = "user program" // a container worker's function process
		}
		if kb := PeakRSSKB(pid); kb*1024 > peaks[name] {
			peaks[name] = kb * 1024
		}
	}
	return peaks
}

// PeakRSSKB is a process's peak resident memory in KiB (VmHWM in /proc/PID/status);
// zero if the process is gone.
func PeakRSSKB(pid int) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// Alive reports whether process pid exists and has not exited (a zombie has).
func Alive(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

// Flag is the value of flag name on process pid's command line, or "".
func Flag(pid int, name string) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	args := strings.Split(string(b), "\x00")
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
