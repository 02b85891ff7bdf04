package storeurl_test

import (
	"bytes"
	"context"
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

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/store/storeurl"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client certificate,
// all PEM, to dir, and returns the server's loaded.
func pki(t *testing.T, dir string) (server tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name string, blocks ...*pem.Block) {
		var b bytes.Buffer
		for _, blk := range blocks {
			pem.Encode(&b, blk)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for i, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		name := [...]string{"server", "client"}[i]
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
		write(name+"-key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	server, err = tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return server, pool
}

// keysFile makes a keys file with a tenant's key and a control plane's.
func keysFile(t *testing.T) (keys *auth.Keys, tenant, control string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keys.json")
	tenant, err := auth.Add(file, auth.RoleTenant, "acme")
	if err == nil {
		control, err = auth.Add(file, auth.RoleControl, "")
	}
	if err == nil {
		keys, err = auth.Open(file)
	}
	if err != nil {
		t.Fatal(err)
	}
	return keys, tenant, control
}

// roundTrip puts a blob and reads it back.
func roundTrip(ctx context.Context, rawURL, key string) error {
	st, err := storeurl.OpenKey(ctx, rawURL, "test", key)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Put(ctx, "probe", strings.NewReader("hello")); err != nil {
		return err
	}
	r, err := st.Open(ctx, "probe")
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err == nil && string(b) != "hello" {
		err = errors.New("read back " + string(b))
	}
	return err
}

// A store URL reaches a NATS server that serves TLS only: with its CA as a file
// or as the certificate itself (what Portable makes for node containers), for a
// tenant's key and for a system key (which opens a connection per tenant),
// and with a client certificate when the server asks for one.
func TestOpenTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cert, pool := pki(t, dir)
	keys, tenantKey, controlKey := keysFile(t)
	srv, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ca := filepath.Join(dir, "ca.pem")
	withCA := storeurl.WithCA(srv.URL(), ca)
	if want := srv.URL() + "?ca=" + ca; withCA != want {
		t.Errorf("WithCA = %s; want %s", withCA, want)
	}
	portable, err := storeurl.Portable(withCA)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(portable, dir) || !strings.Contains(portable, "ca_data=") {
		t.Errorf("Portable(%s) = %s; want the CA's data, not its file", withCA, portable)
	}
	plain := strings.Replace(srv.URL(), "tls://", "nats://", 1)
	for _, u := range []string{withCA, plain + "?ca=" + url.QueryEscape(ca), portable} {
		for _, key := range []string{tenantKey, controlKey} {
			if err := roundTrip(ctx, u, key); err != nil {
				t.Errorf("%s with a %s key: %v", u, auth.Role(strings.Split(key, "_")[1]), err)
			}
		}
	}
	// Without the CA the server's certificate is not trusted; without TLS the
	// server does not answer.
	if err := roundTrip(ctx, srv.URL(), tenantKey); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("%s without the CA: %v; want a certificate error", srv.URL(), err)
	}
	if err := roundTrip(ctx, storeurl.WithCA(srv.URL(), filepath.Join(dir, "client.pem")), tenantKey); err == nil {
		t.Error("a server certificate signed by another CA than the one given was trusted")
	}

	// Mutual TLS.
	mtls, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), Keys: keys,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mtls.Stop)
	withClient := storeurl.WithCA(mtls.URL(), ca) + "&cert=" + filepath.Join(dir, "client.pem") + "&key=" + filepath.Join(dir, "client-key.pem")
	for _, key := range []string{tenantKey, controlKey} {
		if err := roundTrip(ctx, withClient, key); err != nil {
			t.Errorf("%s: %v", withClient, err)
		}
	}
	if err := roundTrip(ctx, storeurl.WithCA(mtls.URL(), ca), tenantKey); err == nil {
		t.Error("a client without a certificate got in where the server asks for one")
	}
	if _, err := storeurl.Portable(withClient); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("Portable of a URL with a client certificate: %v; want a refusal naming it", err)
	}
}

func TestBadTLSURLs(t *testing.T) {
	for u, want := range map[string]string{
		"tls://127.0.0.1:1?ca=/nope/ca.pem":            "/nope/ca.pem",
		"tls://127.0.0.1:1?cafile=x":                   "unknown parameter",
		"tls://127.0.0.1:1?ca=a&ca_data=b":             "not both",
		"nats://127.0.0.1:1?cert=c.pem":                "give both",
		"tls://127.0.0.1:1?ca_data=!!":                 "base64url",
		"tls://127.0.0.1:1?cert=/nope/c&key=/nope/k":   "/nope/c",
		"nats://127.0.0.1:1?ca_data=" + "aGVsbG8gd29y": "no DER certificate",
	} {
		_, err := storeurl.Open(context.Background(), u, "test")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error saying %q", u, err, want)
		}
	}
}

// A cluster that admits tenants by key needs a store that keeps them apart: a
// NATS server with keys does, one without keys does not, over TLS or not, and
// Firestore never does.
func TestCheckIsolation(t *testing.T) {
	dir := t.TempDir()
	cert, _ := pki(t, dir)
	keys, _, _ := keysFile(t)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, tc := range []struct {
		keys     *auth.Keys
		tls      bool
		isolates bool
	}{{nil, false, false}, {keys, false, true}, {nil, true, false}, {keys, true, true}} {
		cfg := natsserver.Config{StoreDir: t.TempDir(), Keys: tc.keys}
		if tc.tls {
			cfg.TLS = tlsCfg
		}
		srv, err := natsserver.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		u := srv.URL()
		if tc.tls {
			u = storeurl.WithCA(u, filepath.Join(dir, "ca.pem"))
		}
		err = storeurl.CheckIsolation(u)
		switch {
		case tc.isolates && err != nil:
			t.Errorf("%s, a server with keys: %v", u, err)
		case !tc.isolates && (!errors.Is(err, storeurl.ErrNoIsolation) || !strings.Contains(err.Error(), "burla nats-server --keys")):
			t.Errorf("%s, a server without keys: %v; want %v saying what to run instead", u, err, storeurl.ErrNoIsolation)
		}
		srv.Stop()
	}
	if err := storeurl.CheckIsolation("firestore://p?bucket=b"); !errors.Is(err, storeurl.ErrNoIsolation) {
		t.Errorf("Firestore: %v; want %v", err, storeurl.ErrNoIsolation)
	}
}
