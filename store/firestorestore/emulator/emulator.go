// Package emulator runs the official Cloud Firestore emulator that ships with the
// Google Cloud CLI (`gcloud emulators firestore start`), for tests. It needs gcloud
// with its cloud-firestore-emulator component and Java; Start says plainly which is
// missing.
package emulator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Emulator is a running Firestore emulator.
type Emulator struct {
	host string
	cmd  *exec.Cmd
	out  *syncBuffer

	stopOnce sync.Once
	exited   chan struct{}
}

// Start starts an emulator on a free loopback port and returns once it answers.
func Start(ctx context.Context) (*Emulator, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return nil, fmt.Errorf("firestore emulator: the Google Cloud CLI (gcloud) is not installed: %w", err)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("firestore emulator: Java is not installed (the emulator needs Java 11 or newer): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(gcloud, "emulators", "firestore", "start", "--host-port="+host, "--quiet")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that Stop ends the Java process gcloud starts too;
	// and it dies with its parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("firestore emulator: start %s: %w", gcloud, err)
	}
	e := &Emulator{host: host, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(e.exited) }()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		if e.ready(ctx) {
			return e, nil
		}
		select {
		case <-e.exited:
			return nil, fmt.Errorf("firestore emulator exited before it was ready (is the cloud-firestore-emulator component installed?):\n%s", out.String())
		case <-ctx.Done():
			e.Stop()
			return nil, fmt.Errorf("firestore emulator not ready on %s: %w\n%s", host, ctx.Err(), out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Emulator) ready(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.host+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && bytes.HasPrefix(bytes.TrimSpace(body), []byte("Ok"))
}

// Host is the emulator's host:port, the value for FIRESTORE_EMULATOR_HOST.
func (e *Emulator) Host() string { return e.host }

// Reset deletes every document of project's default database.
func (e *Emulator) Reset(ctx context.Context, project string) error {
	url := fmt.Sprintf("http://%s/emulator/v1/projects/%s/databases/(default)/documents", e.host, project)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset firestore emulator: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("reset firestore emulator: %s: %s", resp.Status, body)
	}
	return nil
}

// Stop ends the emulator and every process it started.
func (e *Emulator) Stop() {
	e.stopOnce.Do(func() {
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.exited
		}
	})
}

// SetEnv points this process's Firestore clients, and the processes it starts, at
// the emulator.
func (e *Emulator) SetEnv() error { return os.Setenv("FIRESTORE_EMULATOR_HOST", e.host) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("firestore emulator: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
