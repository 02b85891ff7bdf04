package containerworker

import (
	"sync"
	"time"
)

// pacer decides when a worker claims its next chunk: just before the current one
// ends, judged by how long its calls and its claims have been taking. Claimed
// earlier, a chunk would wait in a busy worker while another worker idles (three
// 10-second inputs on four workers must take 10 seconds, not 20); claimed later,
// the program would wait a claim's round trip between chunks.
type pacer struct {
	want chan struct{} // one token: claim the next chunk now

	mu        sync.Mutex
	gen       int           // which chunk the state below is about
	remaining int           // its calls not yet answered
	last      time.Time     // when its last call ended (or it started)
	call      time.Duration // a call's duration, averaged; 0 until measured
	claim     time.Duration // a claim's latency, averaged
	asked     bool          // the next chunk has been asked for
	armed     bool          // a timer will look again
}

// newPacer returns a pacer that asks for the first chunk at once.
func newPacer() *pacer {
	p := &pacer{want: make(chan struct{}, 1)}
	p.want <- struct{}{}
	return p
}

// average weighs the newest sample by 1/8.
func average(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return avg + (sample-avg)/8
}

// claimed records how long a claim that found a chunk took. A claim that waited
// for chunks to be written says little about the round trip, so it counts as at
// most 20 ms.
func (p *pacer) claimed(d time.Duration) {
	p.mu.Lock()
	p.claim = average(p.claim, min(d, 20*time.Millisecond))
	p.mu.Unlock()
}

// start begins a chunk of n calls.
func (p *pacer) start(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.remaining, p.last, p.asked, p.armed = n, time.Now(), false, false
	p.look()
}

// answered records that one of the chunk's calls ended.
func (p *pacer) answered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.call = average(p.call, now.Sub(p.last))
	p.remaining--
	p.last = now
	p.look()
}

// end records that the chunk is finished, however it went.
func (p *pacer) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.ask()
}

// look asks for the next chunk if the current one will end within the lead, or
// arms a timer to look again when it might. Called with mu held.
func (p *pacer) look() {
	if p.asked || p.armed || p.call == 0 {
		return // asked already, or nothing to judge by yet: ask when the chunk ends
	}
	lead := 2*p.claim + time.Millisecond
	left := time.Duration(p.remaining)*p.call - time.Since(p.last) - lead
	if left <= 0 {
		p.ask()
		return
	}
	p.armed = true
	gen := p.gen
	time.AfterFunc(left, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if gen == p.gen {
			p.armed = false
			p.look()
		}
	})
}

func (p *pacer) ask() {
	if p.asked {
		return
	}
	p.asked = true
	select {
	case p.want <- struct{}{}:
	default:
	}
}
