// Package tlsdir makes and reads a cluster's TLS directory: a CA, the servers'
// certificate and clients' certificates, as `burla certs make` writes them and
// `burla dev --tls-dir`, the servers and the compose files read them.
package tlsdir

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The files of a TLS directory (devcluster.Config.TLSDir, Make).
const (
	CA        = "ca.pem"         // the CA's certificate: clients trust it
	CAKey     = "ca-key.pem"     // the CA's key: it signs certificates; keep it off the servers
	Server    = "server.pem"     // the servers' certificate, then the CA's
	ServerKey = "server-key.pem" // its key
)

// Load reads the servers' certificate from a TLS directory (devcluster.Config.TLSDir),
// and returns the TLS configuration they serve with and the CA's file.
func Load(dir string) (*tls.Config, string, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, Server), filepath.Join(dir, ServerKey))
	if err != nil {
		return nil, "", fmt.Errorf("TLS directory %s: %w (burla certs make writes one)", dir, err)
	}
	ca, err := filepath.Abs(filepath.Join(dir, CA))
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(ca); err != nil {
		return nil, "", fmt.Errorf("TLS directory %s: the CA's certificate: %w", dir, err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, ca, nil
}

// Lifetimes of what Make makes: the CA outlives many renewals of the
// servers' certificate, which Make makes anew each time it runs.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 3 * 365 * 24 * time.Hour
)

// Make writes what a cluster's Temporal and NATS need to serve TLS into dir,
// in the layout devcluster.Config.TLSDir, `burla temporal-server --tls-cert` and the compose
// files read:
//
//	ca.pem, ca-key.pem          a CA, made only when dir has none, so that clients
//	                            that trust it go on trusting what it signs next
//	server.pem, server-key.pem  a certificate for hosts (names and IP addresses),
//	                            localhost, 127.0.0.1 and ::1, signed by the CA, made
//	                            anew each time: run it again to add a host or renew
//	NAME.pem, NAME-key.pem      for each name in clients, a client certificate
//	                            signed by the CA, for servers that ask for one
//	                            (mutual TLS, --tls-client-ca ca.pem)
//
// It is all made here, in Go, so that making them takes the burla binary alone
// (no openssl), as on a server that runs nothing but its image. Keys are ECDSA
// P-256, written readable by their owner only.
func Make(dir string, hosts, clients []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make TLS: %w", err)
	}
	for _, c := range clients {
		// A file name in dir, which must not be the CA's or the servers'.
		if c == "" || c == "ca" || c == "server" || strings.Trim(c, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("make TLS: client name %q: use lower-case letters, digits and dashes, and neither ca nor server", c)
		}
	}
	ca, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return fmt.Errorf("make TLS: %w", err)
	}
	names := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	if err := issue(dir, "server", ca, caKey, names, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("make TLS: %w", err)
	}
	for _, c := range clients {
		if err := issue(dir, c, ca, caKey, nil, x509.ExtKeyUsageClientAuth); err != nil {
			return fmt.Errorf("make TLS: %w", err)
		}
	}
	return nil
}

// loadOrMakeCA reads dir's CA, or makes one if dir has neither its certificate
// nor its key.
func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certFile, keyFile := filepath.Join(dir, CA), filepath.Join(dir, CAKey)
	certPEM, certErr := os.ReadFile(certFile)
	keyPEM, keyErr := os.ReadFile(keyFile)
	switch {
	case certErr == nil && keyErr == nil:
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("the CA in %s: %w", dir, err)
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("the CA in %s: its key is not ECDSA", dir)
		}
		ca, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, fmt.Errorf("the CA in %s: %w", dir, err)
		}
		return ca, key, nil
	case !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist):
		return nil, nil, fmt.Errorf("the CA in %s: need both %s and %s, or neither to make a new CA: %w", dir, CA, CAKey, errors.Join(certErr, keyErr))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "burla cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := SignCert(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	// The key first: a certificate without its key would stop the next run.
	if err := writeKey(keyFile, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certFile, 0o644, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// issue writes NAME.pem (the certificate, then the CA's) and NAME-key.pem into
// dir: a certificate for names, signed by ca, for usage.
func issue(dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, usage x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "burla " + name},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(leafLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := SignCert(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("%s certificate: %w", name, err)
	}
	if err := writeKey(filepath.Join(dir, name+"-key.pem"), key); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".pem"), 0o644,
		&pem.Block{Type: "CERTIFICATE", Bytes: der}, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
}

// SignCert signs tmpl with signer, as parent, for pub, with a random 128-bit
// serial number.
func SignCert(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, 0o600, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writePEM replaces path with blocks atomically, so that a server starting
// meanwhile reads the old file or the new one, never half of one.
func writePEM(path string, mode os.FileMode, blocks ...*pem.Block) error {
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil { // whatever the umask
		return err
	}
	return os.Rename(tmp, path)
}
