package containerworker

import (
	"testing"
	"time"
)

func asked(p *pacer) bool {
	select {
	case <-p.want:
		return true
	default:
		return false
	}
}

func TestPacerAsksFirstAtOnce(t *testing.T) {
	if !asked(newPacer()) {
		t.Fatal("a new pacer does not ask for the first chunk")
	}
}

// With nothing measured, the next chunk is asked for when the current one ends.
func TestPacerWithoutMeasuresAsksAtTheEnd(t *testing.T) {
	p := newPacer()
	asked(p)
	p.start(3)
	if asked(p) {
		t.Fatal("asked for the next chunk before any call was measured")
	}
	p.end()
	if !asked(p) {
		t.Fatal("did not ask for the next chunk at the end of the current one")
	}
	p.end()
	if asked(p) {
		t.Fatal("asked twice for one chunk")
	}
}

// Slow calls: the next chunk is not claimed while the current one has a long way to
// go, where another worker might have run it; it is, just before the end.
func TestPacerHoldsBackWhileCallsAreSlow(t *testing.T) {
	p := newPacer()
	asked(p)
	p.mu.Lock()
	p.call, p.claim = 200*time.Millisecond, time.Millisecond
	p.mu.Unlock()
	p.start(1)
	if asked(p) {
		t.Fatal("asked for the next chunk as a 200 ms call started")
	}
	select {
	case <-p.want:
	case <-time.After(5 * time.Second):
		t.Fatal("never asked for the next chunk while the last call ran")
	}
}

// Quick calls: the next chunk is asked for before the current one ends, so the
// program does not wait a claim's round trip.
func TestPacerAsksAheadWhenCallsAreQuick(t *testing.T) {
	p := newPacer()
	asked(p)
	p.mu.Lock()
	p.call, p.claim = time.Microsecond, time.Millisecond
	p.mu.Unlock()
	p.start(100)
	if !asked(p) {
		t.Fatal("did not ask ahead with 100 µs of calls left and a 1 ms claim")
	}
	p.end()
	if asked(p) {
		t.Fatal("asked twice for one chunk")
	}
}
