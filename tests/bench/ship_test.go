package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/tests/clustertest"
)

// linkRate is the slow link's, each way: a home uplink.
const linkRate = "20mbit"

// slowLink is a network namespace of the benchmark's own, joined to this machine
// by a veth pair whose two ends send at linkRate (tc's token bucket filter): a
// client in the namespace reaches a cluster listening on the host's end as a
// laptop reaches a cluster far away.
type slowLink struct{ *clustertest.Netns }

func newSlowLink(tb testing.TB) *slowLink {
	ns, err := clustertest.NewNetns("bench", "bb", 232)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ns.Remove)
	tbf := []string{"root", "tbf", "rate", linkRate, "burst", "32kbit", "latency", "400ms"}
	for _, step := range [][]string{
		append([]string{"tc", "qdisc", "add", "dev", ns.HostIf}, tbf...),
		append([]string{"tc", "-n", ns.Name, "qdisc", "add", "dev", ns.NsIf}, tbf...),
	} {
		if err := ns.Run(step...); err != nil {
			tb.Fatal(err)
		}
	}
	return &slowLink{ns}
}

// sent is how many bytes the namespace has sent over the link.
func (l *slowLink) sent(tb testing.TB) int64 {
	out, err := exec.Command("ip", "-n", l.Name, "-j", "-s", "link", "show", "dev", l.NsIf).Output()
	if err != nil {
		tb.Fatalf("link statistics: %v", err)
	}
	var links []struct {
		Stats struct {
			TX struct {
				Bytes int64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		tb.Fatalf("link statistics %s: %v", out, err)
	}
	return links[0].Stats.TX.Bytes
}

// run runs prog in the namespace and returns the milliseconds it printed and the
// bytes the namespace sent meanwhile.
func (l *slowLink) run(tb testing.TB, env []string, prog string, args ...string) (time.Duration, int64) {
	before := l.sent(tb)
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Name, prog}, args...)...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, stderr.Bytes())
	}
	ms, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		tb.Fatalf("%s printed %q", prog, out)
	}
	return time.Duration(ms) * time.Millisecond, l.sent(tb) - before
}

// buildClient builds testdata/shipclient, with the line that greets changed to
// line when it is not "", as `go build` builds it (with debug information).
func buildClient(tb testing.TB, dir, name, line string) string {
	src, err := os.ReadFile("testdata/shipclient/main.go")
	if err != nil {
		tb.Fatal(err)
	}
	pkg := "./testdata/shipclient"
	if line != "" {
		const old = `	return "hello, " + name, nil // the line the benchmark changes`
		if !bytes.Contains(src, []byte(old)) {
			tb.Fatal("testdata/shipclient has no line to change")
		}
		tmp, err := os.MkdirTemp("testdata", "shipclient-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(tmp) })
		if err := os.WriteFile(filepath.Join(tmp, "main.go"), bytes.Replace(src, []byte(old), []byte(line), 1), 0o644); err != nil {
			tb.Fatal(err)
		}
		pkg = "./" + tmp
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// BenchmarkShipOverSlowLink ships a program to a cluster over a 20 Mbit/s link,
// then the same program changed by one line, and measures the time from
// RemoteParallelMap to its result and the bytes the client sent, beside the
// same run's time to put the whole executable in the store as one blob, as the
// SDK shipped programs before, and the time of the changed program's job run
// again, which ships nothing.
func BenchmarkShipOverSlowLink(b *testing.B) {
	l := newSlowLink(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := clustertest.StartSplit(ctx, clustertest.Options{Nodes: 1, CPUs: 2, Host: l.HostAddr})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	dir := b.TempDir()
	v1 := buildClient(b, dir, "v1", "")
	v2 := buildClient(b, dir, "v2", `	return "hello there, " + name + "!", nil`)
	fi, err := os.Stat(v2)
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "BURLA_TEMPORAL_ADDRESS="+s.Addrs.Temporal, "BURLA_STORE_URL="+s.Addrs.Store,
		"XDG_CACHE_HOME="+filepath.Join(dir, "cache")) // no version shipped before
	b.ResetTimer()
	var whole, first, change, again time.Duration
	var wholeBytes, firstBytes, changeBytes int64
	for range b.N {
		whole, wholeBytes = l.run(b, env, v2, "whole")
		first, firstBytes = l.run(b, env, v1, "run")
		change, changeBytes = l.run(b, env, v2, "run")
		again, _ = l.run(b, env, v2, "run") // the floor: a process's job, nothing to ship
	}
	b.StopTimer()
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	report(b, "ship: a %s program over %s: whole executable put in %.1f s (%s sent); first ship %.1f s to the result (%s sent); after a one-line change %.2f s (%.0f kB sent, %.2f%% of the program); unchanged %.2f s",
		mb(fi.Size()), linkRate, whole.Seconds(), mb(wholeBytes), first.Seconds(), mb(firstBytes), change.Seconds(), float64(changeBytes)/1e3, 100*float64(changeBytes)/float64(fi.Size()), again.Seconds())
	record(rowShipFirst, fmt.Sprintf("%.1f s to the result, %s sent", first.Seconds(), mb(firstBytes)),
		fmt.Sprintf("before: the whole %s executable put as one blob, %.1f s", mb(fi.Size()), whole.Seconds()))
	record(rowShipChange, fmt.Sprintf("%.2f s to the result, %.0f kB sent (%.2f%% of the program); run again unchanged, %.2f s", change.Seconds(), float64(changeBytes)/1e3, 100*float64(changeBytes)/float64(fi.Size()), again.Seconds()),
		fmt.Sprintf("before: the same put, %.1f s, %s sent", whole.Seconds(), mb(wholeBytes)))
}
