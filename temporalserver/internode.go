package temporalserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	"go.temporal.io/server/common/rpc/encryption"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/burla-temporal/burla/tlsdir"
)

// The server's own services (history, matching, worker and, with keys, the
// internal frontend) listen on loopback, and loopback is shared with every
// process on the machine, a tenant's code included. So they speak mutual TLS
// with certificates that only this process holds: Start makes a throwaway CA
// and two leaves in memory, signs the leaves and drops the CA's key, and gives
// Temporal the result through a TLS config provider. Nothing is written to disk
// or put in the environment, so a child process cannot inherit it either.
//
// Which of Temporal's TLS configs reaches which connection (server v1.32,
// common/rpc and common/resource):
//   - InternodeServerConfig: the listeners of history, matching, worker and
//     the internal frontend;
//   - InternodeClientConfig: every call between the services (frontend and
//     matching to history, history and frontend to matching), and, when there
//     is an internal frontend, the services' clients of it, the worker
//     service's SDK client among them (publicClient.forceTLSConfig "auto");
//   - FrontendServerConfig: the public frontend's listener;
//   - FrontendClientConfig: the services' clients of the public frontend when
//     there is no internal frontend (keys off);
//   - RemoteClusterClientConfig: other clusters; we have none.
//
// The membership is a static host list: it dials nothing itself.
const (
	// internodeName is the name the server certificate is for and the one the
	// clients ask for, whatever address they dial (the services reach each other
	// through membership URLs, not host names).
	internodeName = "internode.temporal.burla.invalid"
	// certLifetime is long enough for any process: the certificates cannot be
	// renewed while the server runs, and are worthless once it exits.
	certLifetime = 20 * 365 * 24 * time.Hour
)

// internodeTLS is the mutual TLS between the server's own services.
type internodeTLS struct {
	server *tls.Config // requires a client certificate from our CA
	client *tls.Config // presents ours, trusts only our CA
	leaf   *x509.Certificate
	ca     *x509.Certificate
}

// newInternodeTLS makes a CA and a server and a client certificate signed by
// it, with fresh keys.
func newInternodeTLS() (*internodeTLS, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("internode TLS: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "burla temporal internode CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := tlsdir.SignCert(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("internode TLS: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("internode TLS: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	leaf := func(name string, usage x509.ExtKeyUsage) (tls.Certificate, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("internode TLS: %s key: %w", name, err)
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "burla temporal internode " + name},
			NotBefore:   now.Add(-time.Minute),
			NotAfter:    now.Add(certLifetime),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{internodeName}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := tlsdir.SignCert(tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("internode TLS: %s certificate: %w", name, err)
		}
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		if cert.Leaf, err = x509.ParseCertificate(der); err != nil {
			return tls.Certificate{}, fmt.Errorf("internode TLS: %s certificate: %w", name, err)
		}
		return cert, nil
	}
	serverCert, err := leaf("server", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	clientCert, err := leaf("client", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	// caKey goes out of scope here: no certificate can be signed any more.
	return &internodeTLS{
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		client: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{clientCert},
			RootCAs:      pool,
			ServerName:   internodeName,
		},
		leaf: clientCert.Leaf,
		ca:   ca,
	}, nil
}

// provider is the TLS configuration the server gets. frontendServer is the
// public frontend's listener config and frontendClient what the services use to
// call the public frontend when there is no internal frontend; nil for both
// means plaintext, as today. A TLS public frontend must be given both together,
// the client trusting the server's certificate (and best presenting t's client
// certificate too); with keys on, the services use the internal frontend and
// frontendClient goes unused.
func (t *internodeTLS) provider(frontendServer, frontendClient *tls.Config) encryption.TLSConfigProvider {
	return &encryption.FixedTLSConfigProvider{
		InternodeServerConfig: t.server,
		InternodeClientConfig: t.client,
		FrontendServerConfig:  frontendServer,
		FrontendClientConfig:  frontendClient,
	}
}

// frontend returns the TLS configs of a public frontend that serves TLS with
// pub, the operator's: the listener's, and that of the services' own clients of
// it (the worker service, when there is no internal frontend, and Start's).
//
// The clients trust exactly the frontend's certificate, whoever signed it: the
// operator's CA may be nowhere this process can read, and nothing else may
// answer at the frontend's address. They present our client certificate, which
// a frontend that asks clients for one (mutual TLS) accepts besides pub's
// ClientCAs, so that the services need no certificate of the operator's.
func (t *internodeTLS) frontend(pub *tls.Config) (server, client *tls.Config, err error) {
	if len(pub.Certificates) == 0 || len(pub.Certificates[0].Certificate) == 0 {
		return nil, nil, errors.New("public frontend TLS: the configuration has no certificate")
	}
	own := pub.Certificates[0].Certificate[0]
	server = pub.Clone()
	server.MinVersion = max(server.MinVersion, tls.VersionTLS12)
	if server.ClientAuth != tls.NoClientCert {
		pool := server.ClientCAs
		if pool == nil {
			// nil stands for the system's roots; keep them.
			if pool, err = x509.SystemCertPool(); err != nil {
				return nil, nil, fmt.Errorf("public frontend TLS: %w", err)
			}
		}
		pool = pool.Clone()
		pool.AddCert(t.ca)
		server.ClientCAs = pool
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: t.client.Certificates,
		// Verified below, against the one certificate the frontend has.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
				return errors.New("the public frontend's address answered with another certificate than the frontend's")
			}
			return nil
		},
	}
	return server, client, nil
}

// ours reports whether the peer of a gRPC call presented our client
// certificate in a TLS handshake that verified it against our CA: whether the
// call comes from this process.
func (t *internodeTLS) ours(p *peer.Peer) bool {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(info.State.VerifiedChains) > 0 && len(info.State.PeerCertificates) > 0 &&
		info.State.PeerCertificates[0].Equal(t.leaf)
}
