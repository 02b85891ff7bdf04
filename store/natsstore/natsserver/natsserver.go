// Package natsserver runs a NATS server with JetStream inside this process, for
// `burla dev` and tests. It is apart from natsstore so that programs that only talk
// to a store do not link a server.
package natsserver

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded NATS server with JetStream.
type Config struct {
	Host     string // default 127.0.0.1
	Port     int    // 0 picks a free port
	StoreDir string // JetStream's directory; empty keeps everything in a temporary directory
}

// Server is a NATS server with JetStream running inside this process.
type Server struct {
	ns *server.Server
}

// Start starts an embedded NATS server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "burla",
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Chunks are bounded well below this; the slack is for framing.
		MaxPayload: 8 << 20,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("start NATS server: not ready after 10s")
	}
	return &Server{ns: ns}, nil
}

// URL is the address clients connect to.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
