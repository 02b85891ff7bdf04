// Package temporalconn says how a component reaches Temporal beyond its address
// and namespace: TLS, with an API key (Temporal Cloud) or a client certificate
// (mTLS), for a Temporal that is not on the same trusted network. The SDK, the
// CLI, the control plane and node agents all read it from the same environment
// variables, so that one setting reaches every component:
//
//	BURLA_TEMPORAL_API_KEY          an API key, sent with every call; implies TLS
//	BURLA_TEMPORAL_TLS_CERT, _KEY   PEM files of a client certificate (mTLS); imply TLS
//	BURLA_TEMPORAL_TLS_CA           the server's CA: a PEM file, or the PEM text itself; implies TLS
//	                                (default: the system's roots)
//	BURLA_TEMPORAL_TLS_SERVER_NAME  the name the server's certificate carries, if not its address's
//	BURLA_TEMPORAL_TLS=1            TLS with neither
//
// Besides, a cluster that asks for Burla API keys (package auth) gets the
// component's key, BURLA_API_KEY, with every call, over TLS if it is set up and
// in the clear on a trusted network otherwise.
package temporalconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/auth"
)

// Security is how to secure the connection; the zero value is plain gRPC, as to
// `burla dev`.
type Security struct {
	TLS        bool   `json:"tls,omitempty"`
	APIKey     string `json:"-"` // a secret: never encoded
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
	CACert     string `json:"ca_cert,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// Key is the caller's Burla API key (auth.EnvKey), for a Temporal that
	// admits callers by it (`burla temporal-server --keys`). A secret: never
	// encoded, and not passed on by Env, since each component has a key of its own.
	Key string `json:"-"`
}

// Environment variable names.
const (
	EnvTLS        = "BURLA_TEMPORAL_TLS"
	EnvAPIKey     = "BURLA_TEMPORAL_API_KEY"
	EnvClientCert = "BURLA_TEMPORAL_TLS_CERT"
	EnvClientKey  = "BURLA_TEMPORAL_TLS_KEY"
	EnvCACert     = "BURLA_TEMPORAL_TLS_CA"
	EnvServerName = "BURLA_TEMPORAL_TLS_SERVER_NAME"
)

// FromEnv reads Security from the environment.
func FromEnv() Security {
	v := os.Getenv(EnvTLS)
	return Security{
		TLS:        v == "1" || v == "true",
		APIKey:     os.Getenv(EnvAPIKey),
		ClientCert: os.Getenv(EnvClientCert),
		ClientKey:  os.Getenv(EnvClientKey),
		CACert:     os.Getenv(EnvCACert),
		ServerName: os.Getenv(EnvServerName),
		Key:        os.Getenv(auth.EnvKey),
	}
}

// Env is s as the environment variables FromEnv reads, for a child process. The
// CA goes as its PEM text rather than its file's name when the file can be read:
// the child may run where the file is not (a node container has none of its
// control plane's files), and a CA certificate is no secret. The client
// certificate's key is, and goes by file name only.
func (s Security) Env() []string {
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	if s.TLS {
		add(EnvTLS, "1")
	}
	add(EnvAPIKey, s.APIKey)
	add(EnvClientCert, s.ClientCert)
	add(EnvClientKey, s.ClientKey)
	add(EnvCACert, portableCA(s.CACert))
	add(EnvServerName, s.ServerName)
	return env
}

// Enabled reports whether the connection uses TLS: asked for, or implied by a
// setting that means nothing without it.
func (s Security) Enabled() bool {
	return s.TLS || s.APIKey != "" || s.ClientCert != "" || s.ClientKey != "" || s.CACert != ""
}

// Apply sets o's TLS and credentials from s. It fails, naming the file, when a
// certificate cannot be loaded.
func (s Security) Apply(o *client.Options) error {
	if !s.Enabled() {
		if s.Key != "" {
			o.Credentials = client.NewAPIKeyStaticCredentials(s.Key)
			o.ConnectionOptions.TLSDisabled = true
		}
		return nil
	}
	if (s.ClientCert == "") != (s.ClientKey == "") {
		return fmt.Errorf("temporal mTLS: give both a client certificate (%s) and its key (%s)", EnvClientCert, EnvClientKey)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(s.ClientCert, s.ClientKey)
		if err != nil {
			return fmt.Errorf("temporal mTLS: load client certificate %s and key %s: %w", s.ClientCert, s.ClientKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if s.CACert != "" {
		pool, err := caPool(s.CACert)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	o.ConnectionOptions.TLS = cfg
	switch {
	case s.APIKey != "":
		o.Credentials = client.NewAPIKeyStaticCredentials(s.APIKey)
	case s.Key != "":
		o.Credentials = client.NewAPIKeyStaticCredentials(s.Key)
	}
	return nil
}

// ErrSettings marks a Dial that failed before it dialled: a certificate or key
// that cannot be loaded, or a client certificate without its key.
var ErrSettings = errors.New("bad Temporal connection settings")

// Dial connects to Temporal with o, secured as s says: every component dials
// here. o carries the address, namespace, logger and metrics handler.
func (s Security) Dial(ctx context.Context, o client.Options) (client.Client, error) {
	if err := s.Apply(&o); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSettings, err)
	}
	return client.DialContext(ctx, o)
}

// isPEM reports whether v is PEM text rather than a file name.
func isPEM(v string) bool {
	return strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN ")
}

// caPool reads the CA certificates ca holds or names (see EnvCACert).
func caPool(ca string) (*x509.CertPool, error) {
	what, data := "CA certificate in "+EnvCACert, []byte(ca)
	if !isPEM(ca) {
		what = ca
		var err error
		if data, err = os.ReadFile(ca); err != nil {
			return nil, fmt.Errorf("temporal TLS: read CA certificate: %w", err)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("temporal TLS: %s holds no PEM certificate", what)
	}
	return pool, nil
}

// portableCA is ca as PEM text when it names a file that holds PEM, else ca as it
// is: a child that cannot read the file then fails naming it.
func portableCA(ca string) string {
	if ca == "" || isPEM(ca) {
		return ca
	}
	data, err := os.ReadFile(ca)
	if err != nil || !isPEM(string(data)) {
		return ca
	}
	return string(data)
}
