package tlsdir

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// Make makes a CA once and a servers' certificate each time, for the hosts
// asked and loopback, and client certificates; Load serves with them.
func TestMake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if err := Make(dir, []string{"nats", "10.0.0.5"}, []string{"node"}); err != nil {
		t.Fatal(err)
	}
	ca1, err := os.ReadFile(filepath.Join(dir, CA))
	if err != nil {
		t.Fatal(err)
	}
	if err := Make(dir, []string{"nats", "10.0.0.5", "temporal"}, nil); err != nil {
		t.Fatal(err)
	}
	ca2, err := os.ReadFile(filepath.Join(dir, CA))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1, ca2) {
		t.Error("a second run made a new CA: clients that trust the first would stop trusting the servers")
	}
	for _, key := range []string{CAKey, ServerKey, "node-key.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", key, err, fi.Mode().Perm())
		}
	}
	cfg, caFile, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(caFile) || filepath.Base(caFile) != CA {
		t.Errorf("Load's CA file %s; want the absolute name of %s", caFile, CA)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca2)
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"nats", "temporal", "10.0.0.5", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("the servers' certificate for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "elsewhere", Roots: pool}); err == nil {
		t.Error("the servers' certificate is good for a host not asked for")
	}
	client, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := x509.ParseCertificate(client.Certificate[0])
	if _, err := cl.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the client certificate: %v", err)
	}
	if err := Make(dir, nil, []string{"../x"}); err == nil {
		t.Error("a client name that is a path was taken")
	}
}
