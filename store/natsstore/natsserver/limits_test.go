package natsserver

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
)

// Tenant limits that cannot work are refused at start: limits without keys
// (every client in one account), fewer streams than the store makes, and
// negative ones.
func TestStartRefusesUnworkableTenantLimits(t *testing.T) {
	for _, tt := range []struct {
		limits TenantLimits
		want   string
	}{
		{TenantLimits{StoreMB: 100}, "tenant limits need API keys"},
		{TenantLimits{Streams: 3}, "less than the 7 the store makes"},
		{TenantLimits{Consumers: -1}, "negative"},
	} {
		s, err := Start(Config{StoreDir: t.TempDir(), TenantLimits: tt.limits})
		if err == nil {
			s.Stop()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start with %+v: %v; want %q", tt.limits, err, tt.want)
		}
	}
}

// A single server reserves each tenant's store bound on its disk when the
// tenant first connects; a tenant whose bound does not fit what is left is
// refused, and the log says why and what to do.
func TestTenantWhoseBoundDoesNotFitIsRefusedWithAReason(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	key, err := auth.Add(keysFile, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	s, err := Start(Config{StoreDir: t.TempDir(), Keys: keys, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		TenantLimits: TenantLimits{StoreMB: 1 << 30}}) // a petabyte
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if nc, err := nats.Connect(s.URL(), nats.Token(key)); err == nil {
		nc.Close()
		t.Fatal("a tenant whose petabyte bound the disk cannot hold was admitted")
	}
	if got := logs.String(); !strings.Contains(got, "reserves each tenant's 1073741824 MB on its disk") || !strings.Contains(got, "lower the tenant limit") {
		t.Errorf("log %q does not say why the tenant was refused", got)
	}
}

// syncBuffer is a bytes.Buffer the server's goroutines may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
