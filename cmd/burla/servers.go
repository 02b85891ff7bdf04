package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/devcluster"
	"github.com/burla-temporal/burla/store/natsstore/natsserver"
	"github.com/burla-temporal/burla/temporalserver"
)

// runTemporalServer runs the embedded Temporal server alone, its state in a SQLite
// file, for a cluster whose parts run as separate processes (burla dev runs the same
// server in its own process).
func runTemporalServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("burla temporal-server", flag.ExitOnError)
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "temporal"), "where the server keeps its SQLite database (temporal.db)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 7233, "frontend port (0: any free port)")
	uiPort := fs.Int("ui-port", 8233, "Web UI port (0: any free port, -1: no UI)")
	readyFile := fs.String("ready-file", "", "write the server's addresses as JSON to this file once it is ready")
	keysFile := fs.String("keys", "", "admit only callers with an API key from this keys file, each tenant seeing only its own jobs")
	verbose := fs.Bool("v", false, "log verbosely")
	fs.Parse(args)
	log := logger(*verbose, "component", "temporal-server")
	keys, err := openKeys(*keysFile)
	if err != nil {
		return err
	}
	ts, err := temporalserver.Start(ctx, temporalserver.Config{
		DataDir: *dataDir, Host: *host, Port: *port, UIPort: *uiPort, Logger: log,
		SearchAttributes: devcluster.SearchAttributes(), Keys: keys,
	})
	if err != nil {
		return err
	}
	defer ts.Stop()
	fmt.Printf("burla temporal-server: frontend %s (namespace %q), Web UI %s, data %s\n", ts.FrontendHostPort(), ts.Namespace(), ts.UIAddress(), *dataDir)
	if err := writeReady(*readyFile, map[string]string{"temporal": ts.FrontendHostPort(), "namespace": ts.Namespace(), "ui": ts.UIAddress()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// runNATSServer runs the embedded NATS JetStream server alone, its streams on disk.
func runNATSServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("burla nats-server", flag.ExitOnError)
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".burla", "nats"), "where JetStream keeps its streams")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 4222, "client port (0: any free port)")
	readyFile := fs.String("ready-file", "", "write the server's URL as JSON to this file once it is ready")
	keysFile := fs.String("keys", "", "admit only clients with an API key from this keys file, each tenant in a NATS account of its own")
	verbose := fs.Bool("v", false, "log verbosely")
	fs.Parse(args)
	keys, err := openKeys(*keysFile)
	if err != nil {
		return err
	}
	ns, err := natsserver.Start(natsserver.Config{Host: *host, Port: *port, StoreDir: *dataDir, Keys: keys,
		Logger: logger(*verbose, "component", "nats-server")})
	if err != nil {
		return err
	}
	defer ns.Stop()
	fmt.Printf("burla nats-server: %s, data %s\n", ns.URL(), *dataDir)
	if err := writeReady(*readyFile, map[string]string{"store": ns.URL()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
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
