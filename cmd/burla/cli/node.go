//go:build linux

package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/containerworker"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/nodeagent"
	dockerprovider "github.com/burla-temporal/burla/provider/docker"
	"github.com/burla-temporal/burla/runtime"
	dockerruntime "github.com/burla-temporal/burla/runtime/docker"
	"github.com/burla-temporal/burla/runtime/process"
	"github.com/burla-temporal/burla/store/firestorestore" // and with it, every component takes firestore:// store URLs
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/tenantbox"
)

// nodeAgentCommand is burla node-agent: one node's agent, started by a node
// provider.
func (m *Main) nodeAgentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "node-agent",
		Short:  "run one node's agent",
		Args:   noArgs(""),
		PreRun: m.undumpable,
	}
	fs := cmd.Flags()
	id := fs.String("id", "", "node ID (lower-case letters, digits, dashes)")
	cluster := fs.String("cluster", "default", "the cluster the node belongs to")
	cpus := fs.Int("cpus", 2, "CPUs: one warm worker per CPU")
	ramMB := fs.Int("ram-mb", 0, "memory in MB (0: not limited)")
	temporal := fs.String("temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	st := storeFlag(fs)
	cacheDir := fs.String("cache-dir", "", "the node's cache directory")
	cacheMaxMB := fs.Int64("cache-max-mb", nodeagent.DefaultCacheMaxBytes>>20, "most MB of programs the node keeps; past it, those used least recently are deleted")
	minFreeMB := fs.Int64("min-free-disk-mb", nodeagent.DefaultMinFreeDisk>>20, "free MB the node's disk must keep: below it the node reports its disk full and the cluster replaces it")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:0", "where to serve the node's Prometheus metrics")
	runtimeName := fs.String("runtime", "process", "where workers run: process, or docker (a container per worker on the local engine)")
	envs := fs.StringArray("env", nil, "a user's image to keep warm workers in besides the default environment (docker runtime; repeatable)")
	verbose := verboseFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if *id == "" || *cacheDir == "" {
			return fmt.Errorf("node-agent: --id and --cache-dir are required")
		}
		log := m.logger(*verbose, "component", "node-agent")
		reg, metricsURL, err := serveMetrics(*metricsAddr, log)
		if err != nil {
			return err
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		var rt runtime.Runtime = process.Runtime{}
		var envImage func(context.Context, string) (string, error)
		switch *runtimeName {
		case "process":
		case "docker":
			images, err := dockerprovider.New(ctx, dockerprovider.Config{Executable: exe})
			if err != nil {
				return err
			}
			if rt, err = dockerruntime.New(ctx, images.Image); err != nil {
				return err
			}
			envImage = images.EnvImage
		default:
			return fmt.Errorf("node-agent: unknown runtime %q (process or docker)", *runtimeName)
		}
		// On a Firestore store the workers reach it with tokens the agent hands them,
		// as the VM's metadata server is closed to them (provider/gce).
		workerArgv := []string{exe, "container-worker", "--node", *id, "--store", *st, "--cache-dir", *cacheDir}
		tokens, err := firestorestore.WorkerTokens(*st)
		if err != nil {
			return fmt.Errorf("node-agent: %w", err)
		}
		if tokens != nil {
			workerArgv = append(workerArgv, "--agent-tokens")
		}
		return nodeagent.Run(ctx, nodeagent.Config{
			Runtime:  rt,
			Envs:     *envs,
			EnvImage: envImage,
			ID:       *id, Cluster: *cluster, CPUs: *cpus, RAMMB: *ramMB,
			TemporalAddress: *temporal, Namespace: *namespace, StoreURL: *st, TemporalSecurity: temporalconn.FromEnv(),
			CacheDir:      *cacheDir,
			CacheMaxBytes: *cacheMaxMB << 20,
			MinFreeDisk:   *minFreeMB << 20,
			WorkerArgv:    workerArgv,
			WorkerTokens:  tokens,
			Logger:        log,
			Metrics:       reg,
			MetricsURL:    metricsURL,
		})
	}
	return cmd
}

// containerWorkerCommand is burla container-worker: one worker on a node,
// started by its node agent, which speaks to it on its stdin and stdout.
func (m *Main) containerWorkerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "container-worker",
		Short:  "run one container worker (its node agent starts it)",
		Args:   noArgs(""),
		PreRun: m.undumpable,
	}
	fs := cmd.Flags()
	node := fs.String("node", "", "node ID")
	slot := fs.Int("slot", 0, "the worker's slot on its node")
	storeURL := storeFlag(fs)
	_ = fs.String("cache-dir", "", "the node's cache directory")
	agentTokens := fs.Bool("agent-tokens", false, "reach a cloud store with the access tokens the node agent hands over, not Application Default Credentials")
	verbose := verboseFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// Before anything else its flags allow: a worker started as root
		// becomes the tenants' user, and none of the calls it runs may read
		// its memory or environment, which hold the node's key.
		if err := tenantbox.Isolate(); err != nil {
			return fmt.Errorf("container-worker: %w", err)
		}
		ctx := cmd.Context()
		log := m.logger(*verbose, "component", "container-worker", "node", *node, "container", *slot)
		creds := storeurl.Credentials{Key: os.Getenv(auth.EnvKey)}
		var tokens *containerworker.Tokens
		if *agentTokens {
			tokens = containerworker.NewTokens()
			creds.Token = tokens.Token
		}
		st, err := storeurl.OpenWith(ctx, *storeURL, fmt.Sprintf("burla-worker-%s-%d", *node, *slot), creds)
		if err != nil {
			return err
		}
		defer st.Close()
		// The runtime names the worker's shared directory in its environment.
		w := containerworker.New(containerworker.Config{Store: st, Blobs: st, Logger: log, SharedDir: os.Getenv(job.EnvSharedDir), Tokens: tokens})
		return w.Serve(ctx, m.Stdin, m.Stdout)
	}
	return cmd
}
