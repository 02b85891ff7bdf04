package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/dashboard"
	"github.com/burla-temporal/burla/tlsdir"
)

// With --dashboard-tls-cert and --dashboard-tls-key the control plane's dashboard
// speaks HTTPS only, and the cookie a key login sets is Secure.
func TestDashboardOverTLS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	if err := tlsdir.Make(dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, tlsdir.Server), filepath.Join(dir, tlsdir.ServerKey)
	log := slog.New(slog.DiscardHandler)
	if _, err := serveDashboard(ctx, "127.0.0.1:0", cert, "", dashboard.Config{}, log); err == nil {
		t.Error("a certificate without its key was accepted")
	}
	keysFile := filepath.Join(dir, "keys.json")
	apiKey, err := auth.Add(keysFile, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	u, err := serveDashboard(ctx, "127.0.0.1:0", cert, key, dashboard.Config{Keys: keys, Logger: log}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "https://") {
		t.Fatalf("dashboard URL %s; want https", u)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, tlsdir.CA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(u + "/?key=" + apiKey)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly {
		t.Errorf("login over HTTPS: %s, cookies %v; want a redirect setting one Secure, HttpOnly cookie", resp.Status, cookies)
	}
	plain := "http://" + strings.TrimPrefix(u, "https://")
	resp, err = http.Get(plain + "/?key=" + apiKey)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
			t.Errorf("a plaintext request: %s, cookies %v; want it refused", resp.Status, resp.Cookies())
		}
	}
}
