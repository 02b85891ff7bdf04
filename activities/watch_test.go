package activities_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/store"
)

// beats plays a client's heartbeats on a clock of its own: each look at the
// heartbeat is one second later, and beat says what the store answers at second n.
type beats struct {
	store.Queue // Progress only: the job is never drained
	mu          sync.Mutex
	n           int
	beat        func(n int) (lastAt int, err error)
	// sealedAt is the second from which the job's inputs are all uploaded; 0:
	// from the start.
	sealedAt int
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (b *beats) Heartbeat(context.Context, string) error { return nil }
func (b *beats) Release(context.Context, string) error   { return nil }
func (b *beats) LastHeartbeat(context.Context, string) (time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	at, err := b.beat(b.n)
	return epoch.Add(time.Duration(at) * time.Second), err
}
func (b *beats) now() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return epoch.Add(time.Duration(b.n) * time.Second)
}
func (b *beats) Progress(context.Context, string) (store.Progress, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return store.Progress{Sealed: b.n >= b.sealedAt, InFlight: 1}, nil
}

func watch(t *testing.T, b *beats) error {
	t.Helper()
	return watchInput(t, b, control.WatchInput{JobID: "j-1", Timeout: 5 * time.Second, Poll: time.Millisecond})
}

func watchInput(t *testing.T, b *beats, in control.WatchInput) error {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	c := &activities.Control{Jobs: b, Queue: b, Now: b.now}
	env.RegisterActivity(c)
	_, err := env.ExecuteActivity(control.ActivityWatchClient, in)
	return err
}

// A detached job's client is watched until its inputs are all uploaded: one
// that goes before loses the job, and one that goes after does not.
func TestWatchClientUntilSealed(t *testing.T) {
	in := control.WatchInput{JobID: "j-1", Timeout: 5 * time.Second, Poll: time.Millisecond, UntilSealed: true}
	gone := &beats{sealedAt: 1 << 30, beat: func(n int) (int, error) { return min(n, 3), nil }}
	err := watchInput(t, gone, in)
	if !clientGone(err) || !strings.Contains(err.Error(), "before every input was uploaded") {
		t.Fatalf("a client gone mid-upload: WatchClient = %v; want ClientGone naming the upload", err)
	}
	sealed := &beats{sealedAt: 4, beat: func(n int) (int, error) { return min(n, 3), nil }}
	if err := watchInput(t, sealed, in); err != nil {
		t.Fatalf("a client gone once its inputs were sealed: WatchClient = %v; want nil", err)
	}
	if sealed.n != 4 {
		t.Errorf("the watch ended at second %d; want 4, when the seal was seen", sealed.n)
	}
}

func clientGone(err error) bool {
	return control.ErrClientGone.Is(err)
}

func TestWatchClientEndsWhenTheClientIsSilent(t *testing.T) {
	b := &beats{beat: func(n int) (int, error) { return min(n, 3), nil }} // last beat at second 3
	if err := watch(t, b); !clientGone(err) {
		t.Fatalf("WatchClient = %v; want ClientGone", err)
	}
	if b.n != 9 {
		t.Errorf("ClientGone at second %d; want 9 (silent 6s > timeout 5s)", b.n)
	}
}

// While the store is down the client cannot heartbeat: its silence counts from
// when the store answers again, not from its last beat before the outage.
func TestWatchClientForgivesAStoreOutage(t *testing.T) {
	b := &beats{beat: func(n int) (int, error) {
		switch {
		case n <= 3:
			return n, nil
		case n <= 20:
			return 0, errors.New("nats: connection closed") // the store restarts
		case n <= 23:
			return 3, nil // the store is back; the client is still reconnecting
		case n < 30:
			return n, nil
		}
		return 0, store.ErrReleased // it has read every result
	}}
	if err := watch(t, b); err != nil {
		t.Fatalf("WatchClient = %v; want nil once the client released the job", err)
	}
	if b.n != 30 {
		t.Errorf("WatchClient returned at second %d; want 30, on the release", b.n)
	}
}

// The client's clock is not the control plane's: a client 30 s behind or ahead
// that beats every second is never silent.
func TestWatchClientIgnoresTheClientsClock(t *testing.T) {
	for _, skew := range []int{-30, 30} {
		b := &beats{beat: func(n int) (int, error) {
			if n == 40 {
				return 0, store.ErrReleased
			}
			return n + skew, nil
		}}
		if err := watch(t, b); err != nil {
			t.Errorf("a client %+ds off, beating: WatchClient = %v; want nil once it released the job", skew, err)
		}
	}
}
