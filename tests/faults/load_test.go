package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

const (
	loadClients = 8
	loadInputs  = 20_000
)

// Eight clients, each its own process, run a job each at once; every job finishes
// with its own correct results. The test reports each component's peak memory over
// the run (VmHWM, reset just before it).
func TestEightClients(t *testing.T) {
	for _, pid := range cluster.Processes() {
		// Writing 5 to clear_refs resets the process's peak RSS (VmHWM).
		os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
	}
	start := time.Now()
	var wg sync.WaitGroup
	peaks := make([]int64, loadClients)
	for i := range loadClients {
		c := startClient(t, "load", "-client", strconv.Itoa(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.out.Scan() {
				line := c.out.Text()
				if v, ok := strings.CutPrefix(line, "peak_rss_kb: "); ok {
					peaks[i], _ = strconv.ParseInt(v, 10, 64)
				} else {
					t.Logf("client %d: %s", i, line)
				}
			}
			if err := c.cmd.Wait(); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	rss := cluster.PeakRSS()
	rss["client (largest of 8)"] = slicesMax(peaks) * 1024
	var parts []string
	keys := make([]string, 0, len(rss))
	for k := range rss {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d MiB", k, rss[k]>>20))
	}
	t.Logf("%d clients × %d inputs in %v (%.0f inputs/s); peak RSS: %s", loadClients, loadInputs, took.Round(10*time.Millisecond),
		float64(loadClients*loadInputs)/took.Seconds(), strings.Join(parts, ", "))
	if !t.Failed() {
		record(row{fault: fmt.Sprintf("%d clients at once, %d inputs each", loadClients, loadInputs),
			outcome: "all completed with correct results", stall: -1, recover: -1,
			job: fmt.Sprintf("%v for all", took.Round(10*time.Millisecond))})
		tableMu.Lock()
		memory = parts
		tableMu.Unlock()
	}
	checkHealthy(t)
}

func slicesMax(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// loadClient is one of TestEightClients's clients: it maps square over its own
// inputs (offset by its number, so that no two clients' outputs agree), checks every
// output, and prints its peak RSS.
func loadClient(ctx context.Context, base []burla.Option) int {
	n := 0
	for i, a := range os.Args {
		if a == "-client" && i+1 < len(os.Args) {
			n, _ = strconv.Atoi(os.Args[i+1])
		}
	}
	in := make([]int, loadInputs)
	for i := range in {
		in[i] = n*loadInputs + i
	}
	out, err := burla.RemoteParallelMap(ctx, square, in, base...)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	for i, v := range out {
		if v != in[i]*in[i] {
			fmt.Printf("error: output %d = %d; want %d\n", i, v, in[i]*in[i])
			return 1
		}
	}
	fmt.Printf("peak_rss_kb: %d\n", clustertest.PeakRSSKB(os.Getpid()))
	return 0
}
