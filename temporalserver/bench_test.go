package temporalserver

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/burla-temporal/burla/auth"
)

// echoWorkflow is one activity and nothing else: the least a job of ours does,
// so that the benchmark times the server's own round trips (frontend, history,
// matching, and back).
func echoWorkflow(ctx workflow.Context, n int) (int, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out int
	err := workflow.ExecuteActivity(ctx, echoActivity, n).Get(ctx, &out)
	return out, err
}

func echoActivity(_ context.Context, n int) (int, error) { return n, nil }

// BenchmarkWorkflows runs workflows of one activity against the embedded
// server, several at a time, with API keys off and on. Every call between the
// server's own services (frontend to history, history to matching, ...) is
// on this path, so the cost of securing them shows here. Besides the time per
// workflow it reports the CPU time the whole process (server, client and
// worker) spent per workflow, which says more than the time on a busy machine.
//
//	CGO_ENABLED=0 go test -run '^$' -bench Workflows -benchtime 200x ./temporalserver/
func BenchmarkWorkflows(b *testing.B) {
	for _, keys := range []bool{false, true} {
		b.Run("keys="+strconv.FormatBool(keys), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cfg := Config{UIPort: -1}
			opts := client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))}
			if keys {
				cfg.Keys = auth.NewMemory()
				key, err := cfg.Keys.AddEphemeral(auth.RoleControl, "")
				if err != nil {
					b.Fatal(err)
				}
				opts.Credentials = client.NewAPIKeyStaticCredentials(key)
				opts.ConnectionOptions.TLSDisabled = true // the public frontend is plaintext
			}
			s, err := Start(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Stop() }()
			opts.HostPort, opts.Namespace = s.FrontendHostPort(), s.Namespace()
			c, err := client.DialContext(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := worker.New(c, taskQueue, worker.Options{})
			w.RegisterWorkflow(echoWorkflow)
			w.RegisterActivity(echoActivity)
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			defer w.Stop()

			var seq atomic.Int64
			b.SetParallelism(4) // 8 workflows in flight on 2 cores
			cpu0 := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := int(seq.Add(1))
					run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "echo-" + strconv.Itoa(n), TaskQueue: taskQueue}, echoWorkflow, n)
					if err != nil {
						b.Error(err)
						return
					}
					var out int
					if err := run.Get(ctx, &out); err != nil || out != n {
						b.Errorf("workflow %d: %d, %v", n, out, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
