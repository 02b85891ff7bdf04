// Package sweep deletes orphaned nodes: nodes a provider has for a running
// cluster that the cluster does not know. They are VMs or containers whose
// NodeWorkflow ended without deleting them, or that a crash left between the
// provider's create and the cluster's record of the node.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/provider"
	"github.com/burla-temporal/burla/status"
)

// Clusters is what the sweeper asks about clusters.
type Clusters interface {
	// Running returns the names of the clusters whose workflows run.
	Running(ctx context.Context) ([]string, error)
	// State returns a cluster's state, with every node it knows.
	State(ctx context.Context, cluster string) (control.ClusterState, error)
}

// Temporal is Clusters through a Temporal client.
type Temporal struct{ Client client.Client }

// Running implements Clusters.
func (t Temporal) Running(ctx context.Context) ([]string, error) {
	return status.RunningClusters(ctx, t.Client)
}

// State implements Clusters.
func (t Temporal) State(ctx context.Context, cluster string) (control.ClusterState, error) {
	return control.NewClient(t.Client).Status(ctx, cluster)
}

// Sweeper deletes the orphaned nodes of the clusters whose provider it has.
type Sweeper struct {
	Clusters  Clusters
	Providers provider.Set
	Log       *slog.Logger // nil: no logging
}

// Run sweeps every interval until ctx ends; a failed sweep is logged, and the
// next one tries again.
func (s *Sweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("orphan sweep", "error", err)
		}
	}
}

// Sweep sweeps every running cluster once and returns how many nodes it deleted.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	clusters, err := s.Clusters.Running(ctx)
	if err != nil {
		return 0, fmt.Errorf("orphan sweep: %w", err)
	}
	deleted := 0
	var errs []error
	for _, cluster := range clusters {
		n, err := s.SweepCluster(ctx, cluster)
		deleted += n
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cluster, err))
		}
	}
	return deleted, errors.Join(errs...)
}

// SweepCluster deletes the cluster's orphaned nodes and returns how many. It
// lists the provider's nodes before it reads the cluster's state, and the cluster
// records a node before creating it, so a node being created is never taken for
// an orphan. A cluster whose provider the sweeper lacks is another control
// plane's, and left alone.
func (s *Sweeper) SweepCluster(ctx context.Context, cluster string) (int, error) {
	before, err := s.Clusters.State(ctx, cluster)
	if err != nil {
		return 0, err
	}
	p, ok := s.Providers[before.Standby.Provider]
	if !ok {
		return 0, nil
	}
	if in, ok := p.(interface {
		In(project, zone string) provider.Provider
	}); ok {
		p = in.In(before.Standby.Project, before.Standby.Zone)
	}
	ids, err := p.List(ctx, cluster)
	if err != nil {
		return 0, err
	}
	st, err := s.Clusters.State(ctx, cluster)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, id := range ids {
		if _, known := st.Nodes[id]; known {
			continue
		}
		s.log().Info("deleting an orphaned node", "cluster", cluster, "node", id)
		if err := p.Delete(ctx, provider.NodeSpec{ID: id, Cluster: cluster, Project: st.Standby.Project, Zone: st.Standby.Zone}); err != nil {
			return deleted, fmt.Errorf("delete orphaned node %s: %w", id, err)
		}
		deleted++
	}
	return deleted, nil
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
