//go:build linux

package cli

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/burla-temporal/burla/tlsdir"
)

// burla certs make writes what --tls-cert, --tls-key and --tls-client-ca read,
// and burla dev --tls makes its own in the data directory.
func TestCertsMakeFeedsTheServerFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if code, _, stderr := runBurla(t, false, "certs", "make", "--dir", dir, "--hosts", "temporal,nats", "--hosts", "10.0.0.5", "--client", "node"); code != exitOK {
		t.Fatalf("burla certs make: exit %d\n%s", code, stderr)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "node.pem", "node-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("burla certs make: %v", err)
		}
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags := serverTLSFlags(fs, "it", "a CA", "a certificate")
	if err := fs.Parse([]string{"--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"),
		"--tls-client-ca", filepath.Join(dir, "ca.pem")}); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("the flags' TLS configuration: %d certificates, client auth %v; want the server's, asking clients for one", len(cfg.Certificates), cfg.ClientAuth)
	}
	for _, args := range [][]string{{"--tls-cert", "x.pem"}, {"--tls-client-ca", "ca.pem"}} {
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		flags := serverTLSFlags(fs, "it", "a CA", "a certificate")
		fs.Parse(args)
		if _, err := flags.load(); err == nil || !strings.Contains(err.Error(), "--tls-key") {
			t.Errorf("%v: %v; want an error asking for --tls-key", args, err)
		}
	}
	if code, _, stderr := runBurla(t, false, "certs", "make"); code != exitUsage || !strings.Contains(stderr, "give --dir DIR") {
		t.Errorf("burla certs make without --dir: exit %d\n%s\nwant a usage error", code, stderr)
	}

	dataDir := t.TempDir()
	dev := &devTLS{make: true}
	got, err := dev.dirFor(dataDir, "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tlsdir.Load(got); err != nil || got != filepath.Join(dataDir, "tls") {
		t.Errorf("burla dev --tls made %s: %v", got, err)
	}
	if _, err := (&devTLS{make: true, dir: dir}).dirFor(dataDir, "127.0.0.1"); err == nil {
		t.Error("burla dev took both --tls and --tls-dir")
	}
}
