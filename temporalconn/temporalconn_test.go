package temporalconn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/burla-temporal/burla/temporalconn"
)

// frontend answers the one call a client makes when it dials, and records the
// authorization header it came with.
type frontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	auth chan string
}

func (f *frontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	select {
	case f.auth <- strings.Join(md.Get("authorization"), ","):
	default:
	}
	return &workflowservice.GetSystemInfoResponse{}, nil
}

// pki writes a CA and a certificate it signed for name, as PEM files in dir.
func pki(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	parent, signer := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	} else {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile, cert, key
}

// serve starts a TLS frontend on loopback; with clientCAs it requires a client
// certificate they signed.
func serve(t *testing.T, certFile, keyFile string, clientCAs *x509.CertPool) (string, *frontend) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	f := &frontend{auth: make(chan string, 1)}
	workflowservice.RegisterWorkflowServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), f
}

func dial(t *testing.T, addr string, s temporalconn.Security) (client.Client, error) {
	t.Helper()
	o := client.Options{HostPort: addr, Namespace: "default"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Dial(ctx, o)
}

func TestAPIKeyOverTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := pki(t, dir, "ca", nil, nil)
	certFile, keyFile, _, _ := pki(t, dir, "temporal.test", ca, caKey)
	addr, f := serve(t, certFile, keyFile, nil)
	c, err := dial(t, addr, temporalconn.Security{APIKey: "k-123", CACert: caFile, ServerName: "temporal.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-f.auth; got != "Bearer k-123" {
		t.Errorf("server saw authorization %q; want the API key as a bearer token", got)
	}
	// Without the CA, the server's certificate is not trusted.
	if c, err := dial(t, addr, temporalconn.Security{APIKey: "k-123", ServerName: "temporal.test"}); err == nil {
		c.Close()
		t.Error("dialled a server whose certificate no trusted CA signed")
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := pki(t, dir, "ca", nil, nil)
	certFile, keyFile, _, _ := pki(t, dir, "temporal.test", ca, caKey)
	clientCert, clientKey, _, _ := pki(t, dir, "burla-client", ca, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	addr, _ := serve(t, certFile, keyFile, pool)
	c, err := dial(t, addr, temporalconn.Security{ClientCert: clientCert, ClientKey: clientKey, CACert: caFile, ServerName: "temporal.test"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c, err := dial(t, addr, temporalconn.Security{TLS: true, CACert: caFile, ServerName: "temporal.test"}); err == nil {
		c.Close()
		t.Error("dialled a server that requires a client certificate without one")
	}
}

func TestBadSettingsNameTheProblem(t *testing.T) {
	var o client.Options
	if err := (temporalconn.Security{ClientCert: "c.pem"}).Apply(&o); err == nil || !strings.Contains(err.Error(), temporalconn.EnvClientKey) {
		t.Errorf("a certificate without its key: %v; want an error naming %s", err, temporalconn.EnvClientKey)
	}
	if err := (temporalconn.Security{ClientCert: "/nope/c.pem", ClientKey: "/nope/k.pem"}).Apply(&o); err == nil || !strings.Contains(err.Error(), "/nope/c.pem") {
		t.Errorf("a missing certificate: %v; want an error naming the file", err)
	}
	// Dial refuses them before it dials, and says so.
	if c, err := (temporalconn.Security{ClientCert: "c.pem"}).Dial(context.Background(), client.Options{HostPort: "127.0.0.1:1"}); !errors.Is(err, temporalconn.ErrSettings) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial with a certificate without its key: %v; want ErrSettings", err)
	}
	var plain client.Options
	if err := (temporalconn.Security{}).Apply(&plain); err != nil || plain.ConnectionOptions.TLS != nil || plain.Credentials != nil {
		t.Errorf("the zero Security changed the options: %v", err)
	}
}

func TestEnvRoundTrip(t *testing.T) {
	s := temporalconn.Security{APIKey: "k", CACert: "/ca.pem", ServerName: "x"}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if got := temporalconn.FromEnv(); got != s {
		t.Errorf("FromEnv after Env = %+v; want %+v", got, s)
	}
}

// A CA alone is enough to ask for TLS: there is nothing else it could mean.
func TestCAImpliesTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := pki(t, dir, "ca", nil, nil)
	certFile, keyFile, _, _ := pki(t, dir, "temporal.test", ca, caKey)
	addr, _ := serve(t, certFile, keyFile, nil)
	c, err := dial(t, addr, temporalconn.Security{CACert: caFile, ServerName: "temporal.test"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A child (a node container) has none of its parent's files: Env gives it the CA
// itself, with which it still reaches the server once the file is gone.
func TestEnvCarriesTheCAItself(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := pki(t, dir, "ca", nil, nil)
	certFile, keyFile, _, _ := pki(t, dir, "temporal.test", ca, caKey)
	addr, _ := serve(t, certFile, keyFile, nil)
	for _, kv := range (temporalconn.Security{CACert: caFile, ServerName: "temporal.test"}).Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if err := os.Remove(caFile); err != nil {
		t.Fatal(err)
	}
	sec := temporalconn.FromEnv()
	if !strings.HasPrefix(sec.CACert, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("%s in the child's environment = %.40q…; want the certificate itself", temporalconn.EnvCACert, sec.CACert)
	}
	c, err := dial(t, addr, sec)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Text that is no certificate is named as such, not taken for a file name.
	if err := (temporalconn.Security{CACert: "-----BEGIN CERTIFICATE-----\nnope\n"}).Apply(new(client.Options)); err == nil || !strings.Contains(err.Error(), temporalconn.EnvCACert) {
		t.Errorf("a CA that is no PEM: %v; want an error naming %s", err, temporalconn.EnvCACert)
	}
}
