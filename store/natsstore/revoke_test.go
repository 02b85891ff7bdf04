package natsstore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store/natsstore"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

// revocationDeadline is how soon after `burla keys revoke` a key's open store
// connections must be gone: the server looks at the keys file several times a
// second, and the rest is slack for a busy machine.
const revocationDeadline = 3 * time.Second

// lost records when a connection was lost, closed or reconnected, for a test
// that waits for a server to drop it and watches that it stays dropped.
type lost struct {
	mu          sync.Mutex
	at          time.Time // the first disconnection
	reconnected bool
	closedErr   error // the last error the connection reported
	gone        chan struct{}
}

func newLost() *lost { return &lost{gone: make(chan struct{})} }

func (l *lost) options() []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.at.IsZero() {
				l.at = time.Now()
				close(l.gone)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			l.mu.Lock()
			l.reconnected = true
			l.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			l.mu.Lock()
			l.closedErr = err
			l.mu.Unlock()
		}),
	}
}

// waitGone waits until the connection is lost and returns how long after since.
func (l *lost) waitGone(t *testing.T, what string, since time.Time) time.Duration {
	t.Helper()
	select {
	case <-l.gone:
	case <-time.After(revocationDeadline):
		t.Fatalf("%s: still connected %v after its key was revoked", what, revocationDeadline)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at.Sub(since)
}

// Revoking a key ends the store connections made with it, as a token and as a
// system key's password for a tenant's account, within revocationDeadline, and
// they do not come back: the server refuses the key when they reconnect. The
// tenant's other key, and other tenants', keep working.
func TestRevokedKeyLosesItsConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	add := func(role auth.Role, tenant string) string {
		t.Helper()
		key, err := auth.Add(keysFile, role, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	revoked, kept, other := add(auth.RoleTenant, "acme"), add(auth.RoleTenant, "acme"), add(auth.RoleTenant, "other")
	nodeKey, keptNode := add(auth.RoleNode, ""), add(auth.RoleNode, "")
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	connect := func(l *lost, opts ...nats.Option) *natsstore.Store {
		t.Helper()
		s, err := natsstore.Connect(ctx, srv.URL(), "tenant", append(opts, l.options()...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	use := func(s *natsstore.Store) error {
		_, err := s.Has(ctx, job.SharedKey("acme", "x"))
		return err
	}
	revokedLost, revokedUserLost, nodeLost := newLost(), newLost(), newLost()
	keptLost, otherLost, keptNodeLost := newLost(), newLost(), newLost()
	byToken := connect(revokedLost, nats.Token(revoked))
	byUser := connect(revokedUserLost, nats.UserInfo("acme", revoked))
	node := connect(nodeLost, nats.UserInfo("acme", nodeKey))
	stay := []*natsstore.Store{
		connect(keptLost, nats.Token(kept)),
		connect(otherLost, nats.Token(other)),
		connect(keptNodeLost, nats.UserInfo("acme", keptNode)),
	}
	for _, s := range append([]*natsstore.Store{byToken, byUser, node}, stay...) {
		if err := use(s); err != nil {
			t.Fatalf("before the revoke: %v", err)
		}
	}

	revokedAt := map[string]time.Time{}
	for _, key := range []string{revoked, nodeKey} {
		if n, err := auth.Revoke(keysFile, auth.KeyID(key)); err != nil || n != 1 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		revokedAt[key] = time.Now()
	}
	for _, c := range []struct {
		what string
		l    *lost
		key  string
	}{
		{"a tenant's connection by token", revokedLost, revoked},
		{"a tenant's connection by user and password", revokedUserLost, revoked},
		{"a node's connection to a tenant's account", nodeLost, nodeKey},
	} {
		t.Logf("%s closed %v after auth.Revoke returned", c.what, c.l.waitGone(t, c.what, revokedAt[c.key]).Round(time.Millisecond))
	}

	// The clients reconnect every 250ms; give them several tries.
	time.Sleep(1500 * time.Millisecond)
	for _, c := range []struct {
		what string
		s    *natsstore.Store
		l    *lost
	}{{"token", byToken, revokedLost}, {"user and password", byUser, revokedUserLost}, {"node", node, nodeLost}} {
		c.l.mu.Lock()
		reconnected, lastErr := c.l.reconnected, c.l.closedErr
		c.l.mu.Unlock()
		if reconnected || c.s.Conn().IsConnected() {
			t.Errorf("the revoked key's connection by %s came back (status %v)", c.what, c.s.Conn().Status())
		}
		if lastErr != nil && !errors.Is(lastErr, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(lastErr.Error()), "authorization") {
			t.Errorf("the revoked key's connection by %s: %v; want an authorization error", c.what, lastErr)
		}
	}
	if nc, err := nats.Connect(srv.URL(), nats.Token(revoked)); err == nil {
		nc.Close()
		t.Error("a new connection with the revoked key was admitted")
	}

	for i, l := range []*lost{keptLost, otherLost, keptNodeLost} {
		select {
		case <-l.gone:
			t.Errorf("connection %d of a key not revoked was lost", i)
		default:
		}
		if err := use(stay[i]); err != nil {
			t.Errorf("connection %d of a key not revoked: %v", i, err)
		}
	}
}

// BenchmarkRevocationLatency measures how long after auth.Revoke returns a live
// connection made with the key is closed, at random moments relative to the
// server's reading of the keys file:
//
//	go test -run '^$' -bench RevocationLatency -benchtime 50x ./store/natsstore/
func BenchmarkRevocationLatency(b *testing.B) {
	keysFile := filepath.Join(b.TempDir(), "keys.json")
	if _, err := auth.Add(keysFile, auth.RoleAdmin, ""); err != nil {
		b.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: b.TempDir(), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	var took []time.Duration
	for b.Loop() {
		key, err := auth.Add(keysFile, auth.RoleTenant, "acme")
		if err != nil {
			b.Fatal(err)
		}
		gone := make(chan time.Time, 1)
		var nc *nats.Conn
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			// The server reads the file again within revocationPoll: until then it
			// does not know the key.
			nc, err = nats.Connect(srv.URL(), nats.Token(key), nats.NoReconnect(),
				nats.DisconnectErrHandler(func(*nats.Conn, error) { gone <- time.Now() }))
			if err == nil {
				break
			}
			if time.Since(start) > 2*time.Second {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Duration(rand.Int64N(int64(300 * time.Millisecond))))
		if _, err := auth.Revoke(keysFile, auth.KeyID(key)); err != nil {
			b.Fatal(err)
		}
		revoked := time.Now()
		select {
		case at := <-gone:
			took = append(took, at.Sub(revoked))
		case <-time.After(revocationDeadline):
			b.Fatalf("still connected %v after the revoke", revocationDeadline)
		}
		nc.Close()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(took[len(took)*95/100].Milliseconds()), "p95-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.ReportMetric(0, "ns/op")
}
