package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	burla "github.com/burla-temporal/burla/sdk"
)

const jobsUsage = `usage: burla jobs <command> [flags] JOB-ID

commands (each prints JSON):
  cancel   cancel a job: its workers stop, and its client gets a Cancelled error

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE)
`

func runJobs(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, jobsUsage)
		os.Exit(2)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("burla jobs "+cmd, flag.ExitOnError)
	env := burla.ConfigFromEnv()
	temporalAddr := fs.String("temporal", env.TemporalAddress, "Temporal frontend host:port")
	namespace := fs.String("namespace", env.Namespace, "Temporal namespace")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	switch cmd {
	case "cancel":
		if fs.NArg() != 1 {
			return fmt.Errorf("burla jobs cancel: want one job ID, got %d arguments", fs.NArg())
		}
		id := fs.Arg(0)
		tc, err := dialTemporal(ctx, *temporalAddr, *namespace)
		if err != nil {
			return fmt.Errorf("connect to Temporal at %s: %w", *temporalAddr, err)
		}
		defer tc.Close()
		if err := tc.CancelWorkflow(ctx, id, ""); err != nil {
			return fmt.Errorf("cancel job %s: %w", id, err)
		}
		return printJSON(map[string]any{"job": id, "cancel_requested": true})
	default:
		fmt.Fprintf(os.Stderr, "burla jobs: unknown command %q\n\n%s", cmd, jobsUsage)
		os.Exit(2)
	}
	return nil
}
