// Package bench measures a warm local cluster beside same-run baselines (its
// benchmarks are in bench_test.go). This file is the shape of the figures that
// `make bench` writes (-args -out FILE) and tests/bench/readme makes the README's
// table from, so that no figure there is copied by hand.
package bench

import "time"

// The rows of the README's table, in its order; the file names each row so.
const (
	rowThreeInputs    = "3-input job, wall time, 50 runs"
	rowThroughput100k = "100 000 printing inputs"
	rowThroughput1M   = "1 000 000 printing inputs"
	rowEfficiency     = "400 inputs × 10 ms sleep"
	rowManyJobs       = "14 jobs at once, each 4 inputs × 400 ms sleep"
	rowBytes          = "1 GiB of inputs in one call (1 024 × 1 MiB strings)"
	rowFirstResult    = "job start to first result, 10 runs of 4 inputs"
	rowClusterUp      = "cluster up to 2 standby nodes ready, 10 runs"
	rowTenMillion     = "10 000 000 trivial inputs in one call"
	rowShipFirst      = "a program's first job over a 20 Mbit/s link"
	rowShipChange     = "the same program changed by one line, over that link"
)

// Rows is the table's row names in order.
var Rows = []string{rowThreeInputs, rowThroughput100k, rowThroughput1M, rowEfficiency, rowManyJobs, rowBytes, rowFirstResult, rowClusterUp, rowTenMillion, rowShipFirst, rowShipChange}

// Results is what a run of the benchmarks measured.
type Results struct {
	When    time.Time      `json:"when"`
	CPUs    int            `json:"cpus"`  // of this machine
	Nodes   int            `json:"nodes"` // of the dev cluster
	NodeCPU int            `json:"node_cpus"`
	Figures map[string]Row `json:"figures"` // by row name
}

// Row is one figure: burla's and the same run's local pool's.
type Row struct {
	Burla string `json:"burla"`
	Local string `json:"local,omitempty"`
}
