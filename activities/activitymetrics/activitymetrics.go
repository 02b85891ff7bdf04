// Package activitymetrics makes the activities' metrics (activities.ControlMetrics
// and NodeMetrics) Prometheus metrics.
package activitymetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/burla-temporal/burla/activities"
)

// Control registers the control plane's metrics on reg.
func Control(reg prometheus.Registerer) *activities.ControlMetrics {
	placed := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_jobs_placed_total", Help: "Jobs placed on nodes."})
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_placements_failed_total", Help: "Jobs that found no node to run on."})
	finished := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burla_control_jobs_finished_total",
		Help: "Jobs cleaned up after they ended, by their final state (Succeeded, Failed, Cancelled; unknown for jobs started by older clusters)."}, []string{"state"})
	lost := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_clients_lost_total", Help: "Jobs cancelled because their client stopped heartbeating."})
	live := prometheus.NewGauge(prometheus.GaugeOpts{Name: "burla_control_nodes_live", Help: "Live nodes seen at the last placement."})
	blobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_blobs_collected_total",
		Help: "Blobs the collector deleted: ended jobs' large inputs and outputs and environments, programs no job ran for a while."})
	blobBytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_blob_bytes_collected_total", Help: "Bytes of the blobs the collector deleted."})
	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "burla_control_jobs_collected_total",
		Help: "Jobs whose records (spec, results, logs) the collector deleted, their retention after they ended having passed."})
	reg.MustRegister(placed, failed, finished, lost, live, blobs, blobBytes, jobs)
	return &activities.ControlMetrics{
		JobsPlaced: placed, PlacementFailed: failed, JobsFinished: by(finished), ClientsLost: lost, NodesLive: live,
		BlobsCollected: blobs, BlobBytesCollected: blobBytes, JobsCollected: jobs,
	}
}

// Node registers a node's job metrics on reg.
func Node(reg prometheus.Registerer) *activities.NodeMetrics {
	jobs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burla_node_jobs_total", Help: "Job shares this node ran, by how they ended."}, []string{"outcome"})
	reg.MustRegister(jobs)
	return &activities.NodeMetrics{Jobs: by(jobs)}
}

// by counts by the vector's one label.
func by(v *prometheus.CounterVec) activities.CounterBy {
	return func(value string) activities.Counter { return v.WithLabelValues(value) }
}
