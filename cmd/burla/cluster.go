package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/names"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/workflows"
)

const clusterUsage = `usage: burla cluster <command> [flags]

commands (each prints JSON):
  up           start the cluster's ClusterWorkflow and wait until standby is ready
  down         delete every node and end the cluster
  status       the cluster's standby spec and nodes
  set-standby  change the standby spec (--nodes, --cpus, --ram-mb, --max-nodes, --env)
  restart      replace every idle node

flags: --temporal host:port (BURLA_TEMPORAL_ADDRESS), --namespace (BURLA_NAMESPACE), --cluster name;
  up and set-standby: --nodes, --cpus, --ram-mb, --max-nodes, --env, --provider local|docker|gce,
  and for gce --project P --zone Z (a control plane started with --gce-project serves it)
`

func runCluster(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, clusterUsage)
		os.Exit(2)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("burla cluster "+cmd, flag.ExitOnError)
	env := burla.ConfigFromEnv() // the addresses programs use, and their defaults
	temporalAddr := fs.String("temporal", env.TemporalAddress, "Temporal frontend host:port")
	namespace := fs.String("namespace", env.Namespace, "Temporal namespace")
	cluster := fs.String("cluster", names.DefaultCluster, "cluster name")
	nodes := fs.Int("nodes", 2, "standby nodes (up, set-standby)")
	cpus := fs.Int("cpus", 2, "CPUs per node (up, set-standby)")
	ramMB := fs.Int("ram-mb", 0, "memory per node in MB (up, set-standby)")
	maxNodes := fs.Int("max-nodes", 0, "most nodes at once (0: no bound)")
	providerName := fs.String("provider", "local", "node provider (up, set-standby): local, docker or gce")
	project := fs.String("project", "", "the Google Cloud project gce nodes are made in (up, set-standby; default: the control plane's --gce-project)")
	zone := fs.String("zone", "", "the zone gce nodes are made in, e.g. us-central1-a (up, set-standby; default: the control plane's --gce-zone)")
	var envs []string
	repeated(fs, "env", "a local image every node keeps warm workers in (up, set-standby; repeatable; docker runtime)", &envs)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tc, err := dialTemporal(ctx, *temporalAddr, *namespace)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w (is a control plane running? `burla dev` starts one)", *temporalAddr, err)
	}
	defer tc.Close()
	id := names.ClusterWorkflowID(*cluster)
	spec := workflows.StandbySpec{Nodes: *nodes, CPUs: *cpus, RAMMB: *ramMB, MaxNodes: *maxNodes, Provider: *providerName, Envs: envs, Project: *project, Zone: *zone}
	update := func(name string, args ...any) error {
		h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			return fmt.Errorf("cluster %s: %s: %w", *cluster, name, err)
		}
		var st workflows.ClusterState
		if err := h.Get(ctx, &st); err != nil {
			return fmt.Errorf("cluster %s: %s: %w", *cluster, name, err)
		}
		return printJSON(st)
	}
	switch cmd {
	case "up":
		start := time.Now()
		if err := spec.Validate(); err != nil {
			return err
		}
		_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: names.TaskQueueControl,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		}, names.WorkflowCluster, workflows.ClusterInput{State: workflows.ClusterState{Name: *cluster, Standby: spec}})
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return fmt.Errorf("cluster %s is up already; use set-standby to change it", *cluster)
		}
		if err != nil {
			return fmt.Errorf("cluster %s: up: %w", *cluster, err)
		}
		if err := devcluster.WaitReady(ctx, tc, *cluster, spec.Nodes, *timeout); err != nil {
			return err
		}
		st, err := devcluster.Status(ctx, tc, *cluster)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster %s: %d standby nodes ready in %v\n", *cluster, spec.Nodes, time.Since(start).Round(time.Millisecond))
		return printJSON(st)
	case "down":
		if err := update(names.UpdateShutdown); err != nil {
			return err
		}
		return tc.GetWorkflow(ctx, id, "").Get(ctx, nil)
	case "status":
		st, err := devcluster.Status(ctx, tc, *cluster)
		if err != nil {
			return err
		}
		return printJSON(st)
	case "set-standby":
		return update(names.UpdateSetStandby, spec)
	case "restart":
		return update(names.UpdateRestart)
	default:
		fmt.Fprintf(os.Stderr, "burla cluster: unknown command %q\n\n%s", cmd, clusterUsage)
		os.Exit(2)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
