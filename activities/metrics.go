package activities

import "github.com/prometheus/client_golang/prometheus"

// ControlMetrics are the control plane's Prometheus metrics.
type ControlMetrics struct {
	JobsPlaced      prometheus.Counter
	PlacementFailed prometheus.Counter
	JobsFinished    *prometheus.CounterVec // by the job's final state
	ClientsLost     prometheus.Counter
	NodesLive       prometheus.Gauge
	// BlobsCollected and BlobBytesCollected count what Collect deleted.
	BlobsCollected     prometheus.Counter
	BlobBytesCollected prometheus.Counter
	// JobsCollected counts the jobs whose records Collect deleted.
	JobsCollected prometheus.Counter
}

// NewControlMetrics registers the control plane's metrics on reg.
func NewControlMetrics(reg prometheus.Registerer) *ControlMetrics {
	m := &ControlMetrics{
		JobsPlaced:      prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_jobs_placed_total", Help: "Jobs placed on nodes."}),
		PlacementFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_placements_failed_total", Help: "Jobs that found no node to run on."}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burla_control_jobs_finished_total",
			Help: "Jobs cleaned up after they ended, by their final state (Succeeded, Failed, Cancelled; unknown for jobs started by older clusters)."}, []string{"state"}),
		ClientsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_clients_lost_total", Help: "Jobs cancelled because their client stopped heartbeating."}),
		NodesLive:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "burla_control_nodes_live", Help: "Live nodes seen at the last placement."}),
		BlobsCollected: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_blobs_collected_total",
			Help: "Blobs the collector deleted: ended jobs' large inputs and outputs and environments, programs no job ran for a while."}),
		BlobBytesCollected: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_blob_bytes_collected_total", Help: "Bytes of the blobs the collector deleted."}),
		JobsCollected: prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_jobs_collected_total",
			Help: "Jobs whose records (spec, results, logs) the collector deleted, their retention after they ended having passed."}),
	}
	reg.MustRegister(m.JobsPlaced, m.PlacementFailed, m.JobsFinished, m.ClientsLost, m.NodesLive, m.BlobsCollected, m.BlobBytesCollected, m.JobsCollected)
	return m
}

// NodeMetrics are a node agent's Prometheus metrics about the jobs it runs.
type NodeMetrics struct {
	Jobs *prometheus.CounterVec // by outcome: drained, failed, stopped
}

// NewNodeMetrics registers a node's job metrics on reg.
func NewNodeMetrics(reg prometheus.Registerer) *NodeMetrics {
	m := &NodeMetrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burla_node_jobs_total", Help: "Job shares this node ran, by how they ended."}, []string{"outcome"}),
	}
	reg.MustRegister(m.Jobs)
	return m
}
