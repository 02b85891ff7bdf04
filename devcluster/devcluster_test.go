package devcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/tlsdir"
)

// `burla dev --keys --store URL` is refused, before anything starts: the cluster
// would admit tenants by key and then let each read every other's jobs in a store
// that cannot keep them apart. The refusal names the problem and the ways out.
func TestKeysRefuseAStoreThatCannotKeepTenantsApart(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	if _, err := auth.Add(keys, auth.RoleTenant, "acme"); err != nil {
		t.Fatal(err)
	}
	for store, why := range map[string]string{
		"firestore://proj?bucket=b":     "Firestore keeps no tenant from another's jobs",
		"nats://127.0.0.1:4222":         "only in the NATS server it runs itself",
		"tls://u:secret@nats.test:4222": "only in the NATS server it runs itself",
	} {
		dataDir := filepath.Join(t.TempDir(), "dev")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := Start(ctx, Config{DataDir: dataDir, Nodes: 1, CPUs: 1, Keys: keys, StoreURL: store})
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("--keys with --store %s: started", store)
		}
		msg := err.Error()
		if !errors.Is(err, storeurl.ErrNoIsolation) || !strings.Contains(msg, why) || !strings.Contains(msg, "Drop --store") || !strings.Contains(msg, "drop --keys") {
			t.Errorf("--keys with --store %s: %v; want %v saying %q and the ways out", store, err, storeurl.ErrNoIsolation, why)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("the refusal shows the store URL's password: %v", err)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--keys with --store %s: the data directory was made (%v): something started before the refusal", store, err)
		}
	}
}

// A dev cluster with a TLS directory serves TLS only, and its node agents, and
// their workers, still come up: Start returns once a node is ready, which it is
// only after reaching Temporal and NATS. A program reaches both with the CA and a
// key, and not in plaintext.
func TestDevClusterOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds burla and starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "burla")
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./cmd/burla")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build burla: %v\n%s", err, out)
	}
	keysFile := filepath.Join(dir, "keys.json")
	key, err := auth.Add(keysFile, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := tlsdir.Make(tlsDir, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv(temporalconn.EnvCACert, "") // Start sets it for the nodes; put it back after
	c, err := Start(ctx, Config{DataDir: filepath.Join(dir, "dev"), Nodes: 1, CPUs: 1, Executable: exe,
		TemporalPort: -1, UIPort: -1, NATSPort: -1, Keys: keysFile, TLSDir: tlsDir, Dashboard: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := c.Addresses()
	if a.CA != filepath.Join(tlsDir, tlsdir.CA) || !strings.HasPrefix(a.Store, "tls://127.0.0.1:") || !strings.HasSuffix(a.Store, "?ca="+a.CA) || a.UI != "" {
		t.Errorf("addresses %+v; want the CA, a tls:// store URL naming it, and no Web UI", a)
	}

	// A program of tenant acme's.
	st, err := storeurl.OpenKey(ctx, a.Store, "test", key)
	if err != nil {
		t.Fatalf("store %s: %v", a.Store, err)
	}
	st.Close()
	dial := func(sec temporalconn.Security) error {
		o := client.Options{HostPort: a.Temporal, Namespace: a.Namespace, Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))}
		if err := sec.Apply(&o); err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		tc, err := client.DialContext(dctx, o)
		if err == nil {
			tc.Close()
		}
		return err
	}
	// The dashboard serves HTTPS with the same certificate, and asks for a key.
	if !strings.HasPrefix(a.Dashboard, "https://") {
		t.Errorf("dashboard at %q; want https", a.Dashboard)
	} else {
		caPEM, err := os.ReadFile(a.CA)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get(a.Dashboard + "/api/jobs")
		if err != nil {
			t.Fatalf("dashboard over HTTPS with the CA: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("dashboard without a key: %s; want 401", resp.Status)
		}
	}
	if err := dial(temporalconn.Security{CACert: a.CA, Key: key}); err != nil {
		t.Errorf("Temporal with the CA and a key: %v", err)
	}
	if err := dial(temporalconn.Security{Key: key}); err == nil {
		t.Error("Temporal answered a program in plaintext")
	}
	if _, err := storeurl.OpenKey(ctx, strings.Split(a.Store, "?")[0], "test", key); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the store without the CA: %v; want a certificate error", err)
	}
}
