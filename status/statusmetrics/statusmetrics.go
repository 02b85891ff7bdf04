// Package statusmetrics exports the state of every running cluster (package
// status) as Prometheus metrics.
package statusmetrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

// Collector exports the state of every running cluster as Prometheus metrics, read
// when scraped: nodes by state, jobs running, and the chunks their queues hold. It
// costs one visibility query, one query per cluster and one store read per running
// job per scrape, so it belongs on one process per cluster: the control plane.
type Collector struct {
	tc  client.Client
	st  store.Queue
	log *slog.Logger

	nodes, jobs, chunks *prometheus.Desc
}

// NewCollector returns a Collector reading clusters from tc and queues from st.
func NewCollector(tc client.Client, st store.Queue, log *slog.Logger) *Collector {
	return &Collector{tc: tc, st: st, log: log,
		nodes: prometheus.NewDesc("burla_cluster_nodes", "A cluster's nodes, by state (provisioning, ready, assigned, resetting, deleting).",
			[]string{"cluster", "state"}, nil),
		jobs: prometheus.NewDesc("burla_cluster_jobs_running", "Jobs holding nodes of a cluster.",
			[]string{"cluster"}, nil),
		chunks: prometheus.NewDesc("burla_queue_chunks", "Input chunks in the queues of a cluster's running jobs: waiting for a worker, or in flight.",
			[]string{"cluster", "state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.nodes
	ch <- c.jobs
	ch <- c.chunks
}

// scrapeTimeout bounds one Collect; Prometheus's own default timeout is 10s.
const scrapeTimeout = 5 * time.Second

// nodeStates are reported even when no node is in them, so that a graph of them
// drops to zero rather than to nothing.
var nodeStates = []control.NodeState{control.NodeProvisioning, control.NodeReady, control.NodeAssigned, control.NodeResetting, control.NodeDeleting}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	clusters, err := status.RunningClusters(ctx, c.tc)
	if err != nil {
		c.log.Warn("metrics: list clusters", "error", err)
		return
	}
	for _, name := range clusters {
		cs, err := control.NewClient(c.tc).Status(ctx, name)
		if err != nil {
			c.log.Warn("metrics: cluster status", "cluster", name, "error", err)
			continue
		}
		byState := map[control.NodeState]int{}
		for _, n := range cs.Nodes {
			byState[n.State]++
		}
		for _, s := range nodeStates {
			ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(byState[s]), name, string(s))
		}
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(len(cs.Jobs)), name)
		waiting, inFlight := 0, 0
		for id := range cs.Jobs {
			p, err := c.st.Progress(ctx, id)
			if err != nil {
				continue // ended a moment ago, or its queue not made yet
			}
			waiting += p.Waiting
			inFlight += p.InFlight
		}
		ch <- prometheus.MustNewConstMetric(c.chunks, prometheus.GaugeValue, float64(waiting), name, "waiting")
		ch <- prometheus.MustNewConstMetric(c.chunks, prometheus.GaugeValue, float64(inFlight), name, "inflight")
	}
}
