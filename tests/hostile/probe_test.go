package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	burla "github.com/burla-temporal/burla/sdk"
)

// Target is what the hostile function is told of the cluster it runs on: only
// what a tenant knows or can guess.
type Target struct {
	Namespace  string // the Temporal namespace (the default one, or guessed)
	ClusterDir string // a directory to look for the cluster's files in (its data dir, guessed)
}

// Report is what the hostile function got hold of. Every field empty means the
// boundary held.
type Report struct {
	UID        int
	Listening  []string // loopback ports found in /proc/net/tcp{,6}
	Temporal   []string // ports that served Temporal calls without a key, and what they gave
	NATS       []string // ports where NATS admitted a connection without a key
	Keys       []string // where an API key or another credential was found
	ProcReads  []string // other processes' environments or memory that could be read
	Files      []string // the cluster's files (other than the job's own) that could be read
	Env        []string // the names of the function's environment variables
	ProbeError string   // a probe that could not run at all
}

// probe is the hostile tenant's function: run on a node of the cluster, it
// looks for every way across the tenant boundary that a process on that machine
// has, tries each, and reports what worked.
var probe = burla.Func("probe", func(ctx context.Context, tg Target) (Report, error) {
	r := Report{UID: os.Getuid()}
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		r.Env = append(r.Env, name)
		if credential(name, value) {
			r.Keys = append(r.Keys, "own environment: "+name)
		}
	}
	ports, err := listening()
	if err != nil {
		r.ProbeError = err.Error()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, port := range ports {
		r.Listening = append(r.Listening, port)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, n := tryTemporal(ctx, port, tg.Namespace), tryNATS(port)
			mu.Lock()
			defer mu.Unlock()
			if t != "" {
				r.Temporal = append(r.Temporal, port+": "+t)
			}
			if n != "" {
				r.NATS = append(r.NATS, port+": "+n)
			}
		}()
	}
	wg.Wait()
	r.ProcReads, r.Keys = readProcs(r.Keys)
	r.Files = readFiles(tg.ClusterDir)
	return r, nil
})

// keyPattern is an API key as `burla keys add` prints it.
var keyPattern = regexp.MustCompile(`bk_[a-z]+_[a-z0-9-]+_[a-z2-7]{52}`)

// credential reports whether an environment variable holds a key, token or
// credential: one of Burla's or Temporal's, a cloud's, or anything that looks like one.
func credential(name, value string) bool {
	if keyPattern.MatchString(value) {
		return true
	}
	up := strings.ToUpper(name)
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "TLS"} {
		if strings.Contains(up, w) && !strings.HasPrefix(up, "EVIL_") {
			return true
		}
	}
	return false
}

// listening returns the TCP ports that listen on loopback or on every address,
// as host:port to dial, read the way any process can: from /proc/net.
func listening() ([]string, error) {
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return out, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			addr, portHex, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseUint(portHex, 16, 16)
			if err != nil {
				continue
			}
			raw, _ := hex.DecodeString(addr)
			if !loopbackOrAny(raw) {
				continue
			}
			hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
			if !slices.Contains(out, hp) {
				out = append(out, hp)
			}
		}
	}
	return out, nil
}

// loopbackOrAny reads /proc/net's address (little-endian 32-bit words).
func loopbackOrAny(raw []byte) bool {
	ip := make(net.IP, len(raw))
	for i := 0; i+4 <= len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if v4 := ip.To4(); v4 != nil && len(raw) == 16 {
		ip = v4
	}
	return ip.IsLoopback() || ip.IsUnspecified()
}

// tryTemporal dials port as a Temporal frontend with no key and lists every
// workflow of the namespace; it says what it got, or "" when refused.
func tryTemporal(ctx context.Context, port, ns string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: port, Namespace: ns, Logger: sdklog.NewStructuredLogger(discard)})
	if err != nil {
		return ""
	}
	defer c.Close()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns})
	if err != nil {
		return ""
	}
	var ids []string
	for _, e := range resp.GetExecutions() {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}
	return fmt.Sprintf("listed %d workflows without a key: %v", len(ids), ids)
}

// tryNATS connects to port as a NATS client with no credentials.
func tryNATS(port string) string {
	nc, err := nats.Connect("nats://"+port, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return ""
	}
	defer nc.Close()
	return "connected without a key"
}

// readProcs reads every other process's environment, command line and memory
// map that it can, and adds the keys and credentials found there to keys.
func readProcs(keys []string) (reads, _ []string) {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err != nil {
				continue
			}
			if f == "environ" && len(b) > 0 && !ownChild(pid) {
				reads = append(reads, fmt.Sprintf("/proc/%d/environ (%s)", pid, comm(pid)))
			}
			if k := keyPattern.Find(b); k != nil {
				keys = append(keys, fmt.Sprintf("/proc/%d/%s (%s): %.16s…", pid, f, comm(pid), k))
			}
		}
		if m, err := os.Open(filepath.Join("/proc", e.Name(), "mem")); err == nil {
			m.Close()
			if !ownChild(pid) {
				reads = append(reads, fmt.Sprintf("/proc/%d/mem (%s)", pid, comm(pid)))
			}
		}
	}
	return reads, keys
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// ownChild reports whether pid is a process this one started (none here; the Go
// runtime's threads are not processes), so that only others count.
func ownChild(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid())
}

// readFiles walks dir and returns the files in it that it could open and read,
// except the ones that are the job's own (its scratch and shared directories and
// its program).
func readFiles(dir string) []string {
	if dir == "" {
		return nil
	}
	own := []string{os.Getenv("TMPDIR"), os.Getenv("BURLA_SHARED_DIR")}
	if wd, err := os.Getwd(); err == nil {
		own = append(own, wd)
	}
	if exe, err := os.Executable(); err == nil {
		own = append(own, filepath.Dir(exe))
	}
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: what we want
		}
		for _, o := range own {
			if o != "" && (p == o || strings.HasPrefix(p, o+"/")) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		var b [1]byte
		if _, err := f.Read(b[:]); err == nil || !errors.Is(err, fs.ErrPermission) {
			out = append(out, p)
		}
		return nil
	})
	return out
}
