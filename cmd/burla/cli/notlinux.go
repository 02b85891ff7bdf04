//go:build !linux

package cli

import (
	"github.com/spf13/cobra"
)

// What only a Linux machine can run: the servers and nodes of a cluster. A
// laptop of another system runs the client commands (cluster, jobs, keys,
// certs) against a cluster elsewhere, as the SDK does.

func (m *Main) devCommand() *cobra.Command {
	return linuxOnly("dev", "run a local cluster")
}

func (m *Main) controlPlaneCommand() *cobra.Command {
	return linuxOnly("control-plane", "run the control plane")
}

func (m *Main) temporalServerCommand() *cobra.Command {
	return linuxOnly("temporal-server", "run the embedded Temporal server alone")
}

func (m *Main) natsServerCommand() *cobra.Command {
	return linuxOnly("nats-server", "run the embedded NATS JetStream server alone")
}

func (m *Main) nodeAgentCommand() *cobra.Command {
	return linuxOnly("node-agent", "run one node's agent")
}

func (m *Main) containerWorkerCommand() *cobra.Command {
	return linuxOnly("container-worker", "run one container worker")
}
