package activities

// The activities' metrics are kinds of their own, so that this package, which
// the SDK links for the types it shares with the workflows, needs no Prometheus;
// package activitymetrics makes them Prometheus metrics.

// Counter is a count the activities keep (a prometheus.Counter is one).
type Counter interface {
	Inc()
	Add(float64)
}

// Gauge is a level the activities set (a prometheus.Gauge is one).
type Gauge interface{ Set(float64) }

// CounterBy is a count kept by a label's value: the Counter of that value.
type CounterBy func(value string) Counter

// ControlMetrics are the control plane's metrics.
type ControlMetrics struct {
	JobsPlaced      Counter
	PlacementFailed Counter
	JobsFinished    CounterBy // by the job's final state
	ClientsLost     Counter
	NodesLive       Gauge
	// BlobsCollected and BlobBytesCollected count what Collect deleted.
	BlobsCollected     Counter
	BlobBytesCollected Counter
	// JobsCollected counts the jobs whose records Collect deleted.
	JobsCollected Counter
}

// NodeMetrics are a node agent's metrics about the jobs it runs.
type NodeMetrics struct {
	Jobs CounterBy // by outcome: drained, failed, stopped
}
