package nodeagent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/burla-temporal/burla/wire"
)

// workMetrics are the node's container workers' metrics, from the Stats each
// worker reports; the node agent serves them with its own.
type workMetrics struct {
	inputs *prometheus.CounterVec
	claim  prometheus.Histogram
	chunk  prometheus.Histogram
}

func newWorkMetrics() *workMetrics {
	return &workMetrics{
		inputs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "burla_worker_inputs_total",
			Help: "Inputs whose results the node's container workers stored, by outcome: done (the call returned) or failed."}, []string{"outcome"}),
		claim: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "burla_worker_claim_seconds",
			Help: "How long the node's container workers took to claim a chunk of inputs.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		chunk: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "burla_worker_chunk_seconds",
			Help: "How long a chunk took from its claim until it was marked done.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)}),
	}
}

func (m *workMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.inputs, m.claim, m.chunk)
}

func (m *workMetrics) add(s *wire.Stats) {
	if s == nil {
		return
	}
	m.inputs.WithLabelValues("done").Add(float64(s.Done - s.Failed))
	m.inputs.WithLabelValues("failed").Add(float64(s.Failed))
	for _, d := range s.Claims {
		m.claim.Observe(d)
	}
	for _, d := range s.Chunks {
		m.chunk.Observe(d)
	}
}
