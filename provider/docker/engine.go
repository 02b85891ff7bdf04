package docker

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"
)

// Engine is one Docker engine nodes can be placed on.
type Engine struct {
	// Host names the engine in logs and errors: its URL (unix:///var/run/docker.sock,
	// tcp://10.0.0.6:2376), or "local" for the one the environment names.
	Host string
	API  API
}

// TLS file names in a TLS directory: Docker's own convention (DOCKER_CERT_PATH).
const (
	TLSCA   = "ca.pem"
	TLSCert = "cert.pem"
	TLSKey  = "key.pem"
)

// Connect makes a client of the Docker engine at host; it does not check that the
// engine answers (Provider.Ping does), so that an engine on a machine that is down
// can join the provider and be used once it is back. An empty host is the engine the environment names (DOCKER_HOST, DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH, or the local socket). A unix:// host is a local socket; a
// tcp:// host is reached over TLS with the client certificate found in tlsDir (see
// TLSFiles), and refused without one: an engine on TCP without TLS is root on its
// machine for anyone who reaches the port.
func Connect(host, tlsDir string) (Engine, error) {
	var opts []client.Opt
	name := host
	switch {
	case host == "":
		name = "local"
		opts = append(opts, client.FromEnv)
	case strings.HasPrefix(host, "unix://"):
		opts = append(opts, client.WithHost(host))
	case strings.HasPrefix(host, "tcp://"):
		if tlsDir == "" {
			return Engine{}, fmt.Errorf("docker engine %s: a tcp:// engine needs TLS: give a directory with %s, %s and %s (--docker-tls-dir)", host, TLSCA, TLSCert, TLSKey)
		}
		ca, cert, key, err := TLSFiles(tlsDir, host)
		if err != nil {
			return Engine{}, fmt.Errorf("docker engine %s: %w", host, err)
		}
		opts = append(opts, client.WithHost(host), client.WithTLSClientConfig(ca, cert, key))
	default:
		return Engine{}, fmt.Errorf("docker engine %q: want unix:///path or tcp://host:port", host)
	}
	api, err := client.New(opts...)
	if err != nil {
		return Engine{}, fmt.Errorf("docker engine %s: %w", name, err)
	}
	return Engine{Host: name, API: api}, nil
}

// TLSFiles returns the CA certificate, client certificate and client key with which
// to reach the tcp:// engine host: those in dir/HOSTNAME (the host's name or address
// as written in its URL, without the port) if that directory exists, else those in
// dir itself, so that one client certificate can serve every engine and a few
// engines can have their own.
func TLSFiles(dir, host string) (ca, cert, key string, err error) {
	addr := strings.TrimPrefix(host, "tcp://")
	addr, _, _ = strings.Cut(addr, "/")
	name := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		name = h
	}
	if name != "" && !strings.ContainsAny(name, `/\`) && name != "." && name != ".." {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.IsDir() {
			dir = filepath.Join(dir, name)
		}
	}
	files := []string{filepath.Join(dir, TLSCA), filepath.Join(dir, TLSCert), filepath.Join(dir, TLSKey)}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return "", "", "", fmt.Errorf("TLS files for %s: %w", host, err)
		}
	}
	return files[0], files[1], files[2], nil
}
