package bench

import (
	"context"
	"runtime"
	"testing"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/tests/clustertest"
)

// The guard's bounds: several times wider than this machine's noise (±30% run to
// run), so that only a gross regression trips them. Each is a ratio to a baseline
// measured in the same run, never an absolute time.
const (
	// guardSmallJob bounds a 3-input job's p50 in bare Temporal workflows' p50
	// (3 to 4× at 51bda32).
	guardSmallJob = 10.0
	// guardThroughput is the least share of the local pool's rate that 100 000
	// printing inputs may run at (0.024 to 0.13 at 51bda32: the local pool is
	// bound by write system calls, whose cost on this machine varies eightfold).
	guardThroughput = 0.003
	// guardEfficiency is the least parallel efficiency of 400 × 10 ms, over the
	// local pool's (0.6 to 0.75 at 51bda32).
	guardEfficiency = 0.3
)

// TestGuard is the short bench that make test runs: on a dev cluster of its own,
// a few figures of each kind beside their same-run baselines, and a failure when
// one is grossly worse than it has been. make bench measures the README's figures.
func TestGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("the bench guard takes a minute")
	}
	ctx := context.Background()
	var err error
	if dev, err = clustertest.Start(ctx, clustertest.Options{Nodes: *nodes, CPUs: *cpus}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := dev.Stop(); err != nil {
			t.Error(err)
		}
		dev = nil
	}()
	if _, err := burla.RemoteParallelMap(ctx, printingF, []int{1, 2, 3}, opts()...); err != nil {
		t.Fatal(err)
	}

	var small smallJobs
	small.measure(t, ctx, 15)
	p50, bp50, lp50 := percentile(small.remote, 0.5), percentile(small.bare, 0.5), percentile(small.local, 0.5)
	ratio := float64(p50) / float64(max(bp50, time.Microsecond))
	report(t, "guard: 3-input job p50 %.1f ms; bare Temporal workflow p50 %.1f ms (%.1f×, at most %.0f×); local pool p50 %.3f ms",
		ms(p50), ms(bp50), ratio, guardSmallJob, ms(lp50))
	if ratio > guardSmallJob {
		t.Errorf("a 3-input job took %.1f× a bare workflow (p50 %.1f ms against %.1f ms): more than %.0f×", ratio, ms(p50), ms(bp50), guardSmallJob)
	}

	const n = 100_000
	remote, base := beside(t, ctx, printingF, printing, ints(n), runtime.NumCPU())
	share := base.Seconds() / remote.Seconds()
	report(t, "guard: %d printing inputs at %.0f inputs/s; local pool %.0f inputs/s (share %.4f, at least %.3f)",
		n, n/remote.Seconds(), n/base.Seconds(), share, guardThroughput)
	if share < guardThroughput {
		t.Errorf("%d printing inputs ran at %.4f of the local pool's rate: less than %.3f", n, share, guardThroughput)
	}

	const m = 400
	ideal := time.Duration(m) * 10 * time.Millisecond / time.Duration(workers())
	remote, base = beside(t, ctx, sleepyF, sleepy, ints(m), workers())
	eff := float64(base) / float64(remote) // (ideal/remote) / (ideal/base)
	report(t, "guard: %d × 10 ms on %d workers: %.0f ms, efficiency %.2f; local pool %.0f ms, %.2f (relative %.2f, at least %.2f)",
		m, workers(), ms(remote), float64(ideal)/float64(remote), ms(base), float64(ideal)/float64(base), eff, guardEfficiency)
	if eff < guardEfficiency {
		t.Errorf("%d × 10 ms ran at %.2f of the local pool's parallel efficiency: less than %.2f", m, eff, guardEfficiency)
	}
}
