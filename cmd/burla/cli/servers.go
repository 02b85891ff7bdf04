//go:build linux

package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/temporalserver"
	"github.com/burla-temporal/burla/tlsdir"
)

// temporalServerCommand is burla temporal-server: the embedded Temporal server
// alone, its state in a SQLite file, for a cluster whose parts run as separate
// processes (burla dev runs the same server in its own process).
func (m *Main) temporalServerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "temporal-server",
		Short: "run the embedded Temporal server alone (its SQLite file under --data-dir)",
		Args:  noArgs(""),
	}
	fs := cmd.Flags()
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "temporal"), "where the server keeps its SQLite database (temporal.db)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 7233, "frontend port (0: any free port)")
	uiPort := fs.Int("ui-port", 8233, "Web UI port (0: any free port, -1: no UI)")
	readyFile := fs.String("ready-file", "", "write the server's addresses as JSON to this file once it is ready")
	keysFile := fs.String("keys", "", "admit only callers with an API key from this keys file, each tenant seeing only its own jobs")
	tlsFlags := serverTLSFlags(fs, "the frontend", "BURLA_TEMPORAL_TLS_CA", "BURLA_TEMPORAL_TLS_CERT and _KEY")
	verbose := verboseFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		log := m.logger(*verbose, "component", "temporal-server")
		keys, err := openKeys(*keysFile)
		if err != nil {
			return err
		}
		tlsCfg, err := tlsFlags.load()
		if err != nil {
			return fmt.Errorf("temporal-server: %w", err)
		}
		ts, err := temporalserver.Start(ctx, temporalserver.Config{
			DataDir: *dataDir, Host: *host, Port: *port, UIPort: *uiPort, Logger: log,
			SearchAttributes: devcluster.SearchAttributes(), Keys: keys, TLS: tlsCfg,
		})
		if err != nil {
			return err
		}
		defer ts.Stop()
		fmt.Fprintf(m.Stdout, "burla temporal-server: frontend %s (namespace %q), Web UI %s, data %s\n", ts.FrontendHostPort(), ts.Namespace(), ts.UIAddress(), *dataDir)
		if err := writeReady(*readyFile, map[string]string{"temporal": ts.FrontendHostPort(), "namespace": ts.Namespace(), "ui": ts.UIAddress()}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	return cmd
}

// natsServerCommand is burla nats-server: the embedded NATS JetStream server
// alone, its streams on disk.
func (m *Main) natsServerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats-server",
		Short: "run the embedded NATS JetStream server alone (its streams under --data-dir)",
		Args:  noArgs(""),
	}
	fs := cmd.Flags()
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "nats"), "where JetStream keeps its streams")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 4222, "client port (0: any free port)")
	readyFile := fs.String("ready-file", "", "write the server's URL as JSON to this file once it is ready")
	keysFile := fs.String("keys", "", "admit only clients with an API key from this keys file, each tenant in a NATS account of its own")
	tlsFlags := serverTLSFlags(fs, "the client port", "the store URL's ca parameter (tls://HOST:PORT?ca=FILE)", "its cert and key parameters")
	limits := tenantLimitFlags(fs)
	verbose := verboseFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		keys, err := openKeys(*keysFile)
		if err != nil {
			return err
		}
		tlsCfg, err := tlsFlags.load()
		if err != nil {
			return fmt.Errorf("nats-server: %w", err)
		}
		ns, err := natsserver.Start(natsserver.Config{Host: *host, Port: *port, StoreDir: *dataDir, Keys: keys, TLS: tlsCfg, TenantLimits: limits.get(),
			Logger: m.logger(*verbose, "component", "nats-server")})
		if err != nil {
			return err
		}
		defer ns.Stop()
		fmt.Fprintf(m.Stdout, "burla nats-server: %s, data %s\n", ns.URL(), *dataDir)
		if err := writeReady(*readyFile, map[string]string{"store": ns.URL()}); err != nil {
			return err
		}
		<-cmd.Context().Done()
		return nil
	}
	return cmd
}

// writeReady writes v as JSON to path atomically; an empty path writes nothing.
func writeReady(path string, v any) error {
	if path == "" {
		return nil
	}
	if err := devcluster.WriteReady(path, v); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}

// openKeys opens the keys file at path, or returns nil for no path.
func openKeys(path string) (*auth.Keys, error) {
	if path == "" {
		return nil, nil
	}
	return auth.Open(path)
}

// tlsServerFlags is the --tls-* flags of a server: the certificate it serves TLS
// with, and the CA of the certificates it asks clients for, if it does.
type tlsServerFlags struct {
	cert, key, clientCA string
}

// serverTLSFlags defines --tls-cert, --tls-key and --tls-client-ca on fs. what is
// what serves TLS, caSetting and certSetting how its clients name the CA and a
// client certificate, for the flags' help.
func serverTLSFlags(fs *pflag.FlagSet, what, caSetting, certSetting string) *tlsServerFlags {
	t := &tlsServerFlags{}
	fs.StringVar(&t.cert, "tls-cert", "", "serve TLS only on "+what+", with the certificate in this PEM file (then the CAs between it and the root, if any; burla certs make writes one); clients trust its CA through "+caSetting)
	fs.StringVar(&t.key, "tls-key", "", "the PEM file of --tls-cert's key")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "mutual TLS: admit only clients with a certificate that the CA in this PEM file signed (through "+certSetting+"), API keys still asked for")
	return t
}

// load returns the TLS configuration the flags say, or nil for no TLS.
func (t *tlsServerFlags) load() (*tls.Config, error) {
	switch {
	case t.cert == "" && t.key == "" && t.clientCA == "":
		return nil, nil
	case t.cert == "" || t.key == "":
		return nil, errors.New("give both --tls-cert and --tls-key (--tls-client-ca needs them too)")
	}
	pair, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", t.cert, t.key, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if t.clientCA != "" {
		pem, err := os.ReadFile(t.clientCA)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA: %s holds no PEM certificate", t.clientCA)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}

// devTLS is `burla dev`'s --tls and --tls-dir.
type devTLS struct {
	make bool
	dir  string
}

// devTLSFlags defines burla dev's --tls and --tls-dir on fs.
func devTLSFlags(fs *pflag.FlagSet) *devTLS {
	t := &devTLS{}
	fs.BoolVar(&t.make, "tls", false, "serve Temporal and NATS over TLS only, with a certificate for --host and loopback from a CA of the cluster's own, made in DATA-DIR/tls (the CA is kept; programs trust it with BURLA_TEMPORAL_TLS_CA and the store URL's ca parameter)")
	fs.StringVar(&t.dir, "tls-dir", "", "serve Temporal and NATS over TLS only, with ca.pem, server.pem and server-key.pem from this directory (burla certs make writes one)")
	return t
}

// dirFor returns the TLS directory of a dev cluster with dataDir that listens on
// host, made or renewed now for --tls, or "" for no TLS.
func (t *devTLS) dirFor(dataDir, host string) (string, error) {
	switch {
	case t.make && t.dir != "":
		return "", errors.New("give --tls or --tls-dir, not both")
	case t.dir != "":
		return t.dir, nil
	case !t.make:
		return "", nil
	}
	dir := filepath.Join(dataDir, "tls")
	var hosts []string
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		hosts = append(hosts, host)
	}
	if err := tlsdir.Make(dir, hosts, nil); err != nil {
		return "", err
	}
	return dir, nil
}

// tenantLimits are the flags that bound each tenant's account in the embedded NATS
// server (burla nats-server and burla dev, with keys).
type tenantLimits struct{ storeMB, streams, consumers *int }

func tenantLimitFlags(fs *pflag.FlagSet) tenantLimits {
	return tenantLimits{
		storeMB:   fs.Int("tenant-max-store-mb", 0, "most MB each tenant's store holds on disk; with it, none in memory (0: no bound; needs --keys)"),
		streams:   fs.Int("tenant-max-streams", 0, fmt.Sprintf("most streams each tenant's account has, at least %d (0: no bound; needs --keys)", natsserver.StoreStreams)),
		consumers: fs.Int("tenant-max-consumers", 0, "most consumers each tenant's account has: one per job's inputs and one per watch (0: no bound; needs --keys)"),
	}
}

func (l tenantLimits) get() natsserver.TenantLimits {
	return natsserver.TenantLimits{StoreMB: *l.storeMB, Streams: *l.streams, Consumers: *l.consumers}
}
