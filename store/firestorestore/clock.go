package firestorestore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverClock tells Firestore's time on this machine. Leases are instants that
// one claimer writes and another compares with its own "now"; were both read from
// their machines' wall clocks, a claimer 30 s ahead would take chunks other
// claimers still hold, and one 30 s behind would leave a dead claimer's chunks
// waiting half a minute past their lease. So every lease is written and judged on
// the server's clock, which each store estimates from the commit and read times
// Firestore returns.
//
// An estimate is the server's time minus the local midpoint of the call that
// returned it; its error is at most half that call's round trip. A sample
// replaces the current one when its error bound is smaller, or the current one is
// older than clockSampleTTL (local clocks drift, and NTP steps them).
type serverClock struct {
	local func() time.Time // this machine's clock; tests skew it

	mu     sync.Mutex
	offset time.Duration // server minus local
	bound  time.Duration // half the round trip of the sample
	at     time.Time     // when the sample was taken, on the local clock
	synced bool
}

const clockSampleTTL = time.Minute

// observe records that a call sent at sent and answered at got (both local)
// carried the server's time server.
func (c *serverClock) observe(sent, got, server time.Time) {
	if server.IsZero() || got.Before(sent) {
		return
	}
	half := got.Sub(sent) / 2
	offset := server.Sub(sent.Add(half))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced && half > c.bound && got.Sub(c.at) < clockSampleTTL {
		return
	}
	c.offset, c.bound, c.at, c.synced = offset, half, got, true
}

// now returns the server's time as last estimated, or ok false before any call
// has returned one.
func (c *serverClock) now() (t time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local().Add(c.offset), c.synced
}

// serverNow returns Firestore's time, asking the server once if no call has told
// it yet: a read of a document that does not exist carries the read time.
func (s *Store) serverNow(ctx context.Context) (time.Time, error) {
	if t, ok := s.clock.now(); ok {
		return t, nil
	}
	sent := s.clock.local()
	snap, err := s.jobs.Doc("_clock").Get(ctx)
	if err != nil && status.Code(err) != codes.NotFound {
		return time.Time{}, fmt.Errorf("read Firestore's clock: %w", err)
	}
	if snap == nil || snap.ReadTime.IsZero() {
		return time.Time{}, fmt.Errorf("read Firestore's clock: the server sent no read time")
	}
	s.clock.observe(sent, s.clock.local(), snap.ReadTime)
	t, _ := s.clock.now()
	return t, nil
}
