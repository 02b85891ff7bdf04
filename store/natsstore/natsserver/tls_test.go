package natsserver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
)

// testCA is a CA of a test's own, and the certificates it signs as PEM files.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{t: t, dir: t.TempDir()}
	ca.cert, ca.key, ca.file = ca.sign("ca", nil, true)
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(ca.cert)
	return ca
}

// sign makes a certificate for name (and 127.0.0.1), a CA's when isCA, and writes
// it and its key to name.pem and name-key.pem.
func (ca *testCA) sign(name string, usage []x509.ExtKeyUsage, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t := ca.t
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	parent, signer := tmpl, key
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames, tmpl.IPAddresses = []string{name}, []net.IP{net.IPv4(127, 0, 0, 1)}
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(ca.dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ca.dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, file
}

// pair makes a certificate for name with usage and returns it loaded.
func (ca *testCA) pair(name string, usage x509.ExtKeyUsage) tls.Certificate {
	_, _, file := ca.sign(name, []x509.ExtKeyUsage{usage}, false)
	p, err := tls.LoadX509KeyPair(file, strings.TrimSuffix(file, ".pem")+"-key.pem")
	if err != nil {
		ca.t.Fatal(err)
	}
	return p
}

func tenantKeys(t *testing.T) (*auth.Keys, string) {
	t.Helper()
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	key, err := auth.Add(keysFile, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	return keys, key
}

// connect dials url once, without reconnecting, and closes what it got.
func connect(url string, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	// A round trip: a connection refused after its CONNECT fails here at the latest.
	return nc.Flush()
}

// With a certificate the server serves TLS only: a client that does not start
// TLS, or does not trust the server's CA, is turned away before any key is read;
// one that does and has a key gets in, and one without a key is still refused.
func TestTLSOnly(t *testing.T) {
	ca := newTestCA(t)
	keys, key := tenantKeys(t)
	s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys,
		TLS: &tls.Config{Certificates: []tls.Certificate{ca.pair("nats.test", x509.ExtKeyUsageServerAuth)}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "tls" {
		t.Errorf("URL() = %s; want tls://", s.URL())
	}
	plain := "nats://" + u.Host

	if reply, err := speakPlaintext(t, u.Host, key, true); strings.Contains(reply, "PONG") || !errors.Is(err, io.EOF) {
		t.Errorf("a plaintext client with a key got %q, then %v; want the connection closed without a PONG", reply, err)
	}
	// The control: without TLS the same words are answered.
	p, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if reply, _ := speakPlaintext(t, strings.TrimPrefix(p.URL(), "nats://"), key, false); !strings.Contains(reply, "PONG") {
		t.Errorf("a server without TLS did not answer the plaintext client: %q", reply)
	}
	if err := connect(s.URL(), nats.Token(key)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS client that does not trust the server's CA: %v; want a certificate error", err)
	}
	if err := connect(s.URL(), nats.RootCAs(ca.file)); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("TLS client without a key: %v; want %v", err, nats.ErrAuthorization)
	}
	if err := connect(s.URL(), nats.RootCAs(ca.file), nats.Token(key)); err != nil {
		t.Errorf("TLS client with the CA and a key: %v", err)
	}
	if err := connect(plain, nats.RootCAs(ca.file), nats.Token(key)); err != nil {
		t.Errorf("TLS client with the CA and a key, given a nats:// URL: %v", err)
	}
}

// speakPlaintext speaks NATS's protocol to addr without TLS, with key, as a
// client that ignores the server's tls_required would, and returns what the
// server said after the CONNECT and how the conversation ended.
func speakPlaintext(t *testing.T, addr, key string, tlsRequired bool) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	info := make([]byte, 4096)
	n, err := c.Read(info)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Contains(string(info[:n]), `"tls_required":true`); got != tlsRequired {
		t.Errorf("the server's INFO: %s; want tls_required %v", info[:n], tlsRequired)
	}
	if _, err := c.Write([]byte(`CONNECT {"auth_token":"` + key + `","verbose":false,"pedantic":false}` + "\r\nPING\r\n")); err != nil {
		return "", err
	}
	var reply []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		reply = append(reply, buf[:n]...)
		if err != nil || strings.Contains(string(reply), "PONG") {
			return string(reply), err
		}
	}
}

// With a client CA the server admits only clients with a certificate it signed,
// and a key besides.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	keys, key := tenantKeys(t)
	s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys,
		TLS: &tls.Config{Certificates: []tls.Certificate{ca.pair("nats.test", x509.ExtKeyUsageServerAuth)},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	ca.pair("node", x509.ExtKeyUsageClientAuth)
	clientCert := nats.ClientCert(filepath.Join(ca.dir, "node.pem"), filepath.Join(ca.dir, "node-key.pem"))
	other := newTestCA(t)
	other.pair("node", x509.ExtKeyUsageClientAuth)
	forged := nats.ClientCert(filepath.Join(other.dir, "node.pem"), filepath.Join(other.dir, "node-key.pem"))

	if err := connect(s.URL(), nats.RootCAs(ca.file), nats.Token(key)); err == nil {
		t.Error("a client without a certificate got in")
	}
	if err := connect(s.URL(), nats.RootCAs(ca.file), forged, nats.Token(key)); err == nil {
		t.Error("a client with a certificate of another CA got in")
	}
	if err := connect(s.URL(), nats.RootCAs(ca.file), clientCert); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a client with a certificate but no key: %v; want %v", err, nats.ErrAuthorization)
	}
	if err := connect(s.URL(), nats.RootCAs(ca.file), clientCert, nats.Token(key)); err != nil {
		t.Errorf("a client with a certificate and a key: %v", err)
	}
}

func TestTLSWithoutCertificate(t *testing.T) {
	if s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), TLS: &tls.Config{}}); err == nil {
		s.Stop()
		t.Fatal("started with a TLS configuration that has no certificate")
	}
}
