package storeurl

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// natsParams are the query parameters of a NATS URL.
var natsParams = []string{"ca", "ca_data", "cert", "key"}

// parseNATS splits a nats:// or tls:// URL into the server's address, as
// nats.Connect takes it, and the connection's TLS options. The parameters are
// Burla's, not NATS's, so the address goes without them.
func parseNATS(u *url.URL) (string, []nats.Option, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("store URL %s: %w", u.Redacted(), err)
	}
	for k := range q {
		if !slices.Contains(natsParams, k) {
			return "", nil, fmt.Errorf("store URL %s: unknown parameter %q (%s)", u.Redacted(), k, strings.Join(natsParams, ", "))
		}
	}
	server := *u
	server.RawQuery, server.ForceQuery = "", false
	get := q.Get
	if u.Scheme != "tls" && get("ca") == "" && get("ca_data") == "" && get("cert") == "" && get("key") == "" {
		return server.String(), nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case get("ca") != "" && get("ca_data") != "":
		return "", nil, fmt.Errorf("store URL %s: give the CA as a file (ca) or as data (ca_data), not both", u.Redacted())
	case get("ca") != "":
		data, err := os.ReadFile(get("ca"))
		if err != nil {
			return "", nil, fmt.Errorf("store TLS: read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return "", nil, fmt.Errorf("store TLS: %s holds no PEM certificate", get("ca"))
		}
		cfg.RootCAs = pool
	case get("ca_data") != "":
		der, err := base64.RawURLEncoding.DecodeString(get("ca_data"))
		if err != nil {
			return "", nil, fmt.Errorf("store URL %s: ca_data is not base64url: %w", u.Redacted(), err)
		}
		certs, err := x509.ParseCertificates(der)
		if err != nil || len(certs) == 0 {
			return "", nil, fmt.Errorf("store URL %s: ca_data holds no DER certificate: %v", u.Redacted(), err)
		}
		pool := x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
		cfg.RootCAs = pool
	}
	if (get("cert") == "") != (get("key") == "") {
		return "", nil, fmt.Errorf("store URL %s: give both a client certificate (cert) and its key (key)", u.Redacted())
	}
	if get("cert") != "" {
		pair, err := tls.LoadX509KeyPair(get("cert"), get("key"))
		if err != nil {
			return "", nil, fmt.Errorf("store mTLS: load client certificate %s and key %s: %w", get("cert"), get("key"), err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return server.String(), []nats.Option{nats.Secure(cfg)}, nil
}

// Portable returns rawURL with the CA file it names (ca=FILE) replaced by the
// certificates themselves (ca_data), for components that run where the file is
// not: node containers, started by a control plane with none of its files. A CA
// certificate is no secret; a client certificate's key is, and cannot go in a
// URL, which any process on the node could read from the command line, so a URL
// with cert and key is refused: such a store needs nodes that have the files.
// Other URLs come back as they are.
func Portable(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("store URL %q: %w", rawURL, err)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return rawURL, nil
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("store URL %s: %w", u.Redacted(), err)
	}
	if q.Get("cert") != "" || q.Get("key") != "" {
		return "", fmt.Errorf("store URL %s names a client certificate and key, files that node containers do not have (and a key must not go in their command line): "+
			"mutual TLS with the store needs nodes on machines that hold the files", u.Redacted())
	}
	ca := q.Get("ca")
	if ca == "" {
		return rawURL, nil
	}
	data, err := os.ReadFile(ca)
	if err != nil {
		return "", fmt.Errorf("store TLS: read CA certificate: %w", err)
	}
	var der []byte
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			der = append(der, b.Bytes...)
		}
	}
	if len(der) == 0 {
		return "", fmt.Errorf("store TLS: %s holds no PEM certificate", ca)
	}
	q.Del("ca")
	q.Set("ca_data", base64.RawURLEncoding.EncodeToString(der))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// WithCA returns the URL of a NATS server at server (nats:// or tls://host:port)
// reached over TLS, trusting the CA certificates in caFile, in the form people
// read: the file's name is not escaped more than a query needs.
func WithCA(server, caFile string) string {
	u := strings.Replace(server, "nats://", "tls://", 1)
	esc := strings.NewReplacer("%2F", "/", "%3A", ":").Replace(url.QueryEscape(caFile))
	return u + "?ca=" + esc
}

// ErrNoIsolation marks a store that cannot keep tenants apart.
var ErrNoIsolation = errors.New("the store cannot keep tenants apart")

// CheckIsolation returns nil when the store at rawURL keeps tenants apart, as a
// cluster that admits tenants by API key needs, and otherwise an error matching
// ErrNoIsolation that says why not and what to do instead.
//
// A NATS server keeps them apart when it puts each in an account of its own, as
// `burla nats-server --keys` does; such a server refuses a client without a key,
// and one that admits it has no accounts per tenant for the key to choose, so
// every tenant's programs would read and write every other's jobs. Firestore and
// GCS are reached with the Google credentials every component holds alike: there
// is nothing there to tell one tenant from another.
func CheckIsolation(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("store URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "firestore":
		return fmt.Errorf("%w: %s is reached with Google credentials that every tenant's programs would hold alike, and keeps no tenant from another's jobs; "+
			"use a NATS store run by `burla nats-server --keys`, or run the cluster without API keys, for one tenant", ErrNoIsolation, u.Redacted())
	case "nats", "tls":
	default:
		return fmt.Errorf("store URL %s: unknown scheme %q (nats, tls or firestore)", u.Redacted(), u.Scheme)
	}
	// A client without a key: no user or password from the URL either.
	anon := *u
	anon.User = nil
	server, opts, err := parseNATS(&anon)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(server, append(opts, nats.Name("burla-isolation-check"), nats.NoReconnect(), nats.Timeout(5*time.Second))...)
	switch {
	case err == nil:
		nc.Close()
		return fmt.Errorf("%w: the NATS server at %s admits a client without an API key, so it has no account per tenant and every tenant's programs would see every other's jobs; "+
			"run it as `burla nats-server --keys FILE` with the cluster's keys file, or run the cluster without API keys, for one tenant", ErrNoIsolation, server)
	case errors.Is(err, nats.ErrAuthorization):
		return nil
	}
	return fmt.Errorf("store %s: could not tell whether it keeps tenants apart: %w", server, err)
}
