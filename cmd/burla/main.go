// Command burla runs a Burla cluster and its parts:
//
//	burla dev               a whole local cluster: Temporal, NATS, control plane, nodes
//	burla cluster           start, watch, resize, restart and stop a cluster's standby nodes
//	burla jobs              list, show, follow and cancel jobs
//	burla keys              add, list and revoke API keys
//	burla control-plane     the control plane of a cluster whose Temporal and store run elsewhere
//	burla temporal-server   the embedded Temporal server alone (SQLite in a file)
//	burla nats-server       the embedded NATS JetStream server alone
//	burla certs             make the certificates Temporal and NATS serve TLS with
//	burla node-agent        one node's agent (started by a cluster, not by hand)
//	burla container-worker  one worker on a node (started by a node agent)
//
// The commands are package cli's; main only runs them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/burla-temporal/burla/cmd/burla/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := &cli.Main{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	code := m.Run(ctx)
	stop()
	os.Exit(code)
}
