package containerworker

import (
	"sync"
	"time"

	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/wire"
)

// maxSamples bounds the latencies one report carries; more are dropped, which
// leaves the counts exact and the histograms a sample.
const maxSamples = 1024

// stats accumulates a worker's Stats between reports. A nil *stats records nothing.
type stats struct {
	mu sync.Mutex
	s  wire.Stats
}

func (st *stats) claimed(d time.Duration) {
	if st != nil {
		st.sample(&st.s.Claims, d)
	}
}

func (st *stats) chunkDone(d time.Duration) {
	if st != nil {
		st.sample(&st.s.Chunks, d)
	}
}

// sample records d in samples, one of st's lists, up to maxSamples a report.
func (st *stats) sample(samples *[]float64, d time.Duration) {
	st.mu.Lock()
	if len(*samples) < maxSamples {
		*samples = append(*samples, d.Seconds())
	}
	st.mu.Unlock()
}

func (st *stats) stored(rs []store.Result) {
	if st == nil {
		return
	}
	failed := int64(0)
	for _, r := range rs {
		if r.Err != nil {
			failed++
		}
	}
	st.mu.Lock()
	st.s.Done += int64(len(rs))
	st.s.Failed += failed
	st.mu.Unlock()
}

// take returns what was recorded since the last take, and whether it is anything.
func (st *stats) take() (wire.Stats, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	st.s = wire.Stats{}
	return s, s.Done > 0 || len(s.Claims) > 0 || len(s.Chunks) > 0
}
