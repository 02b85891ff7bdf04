package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/burla-temporal/burla/dashboard"
)

// serveMetrics serves a new registry's metrics, with the Go and process collectors,
// on addr at /metrics. It returns the registry and the address it listens on.
func serveMetrics(addr string, log *slog.Logger) (*prometheus.Registry, string, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	go func() {
		if err := http.Serve(ln, mux); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	return reg, "http://" + ln.Addr().String() + "/metrics", nil
}

// serveDashboard serves the web dashboard on addr until ctx ends and returns its
// URL: over TLS with the certificate in certFile and its key in keyFile, when
// both are given.
func serveDashboard(ctx context.Context, addr, certFile, keyFile string, cfg dashboard.Config, log *slog.Logger) (string, error) {
	if (certFile == "") != (keyFile == "") {
		return "", errors.New("dashboard: give both --dashboard-tls-cert and --dashboard-tls-key, or neither")
	}
	var tlsCfg *tls.Config
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return "", fmt.Errorf("dashboard: TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dashboard: listen on %s: %w", addr, err)
	}
	scheme := "http://"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https://"
	}
	srv := &http.Server{Handler: dashboard.New(cfg), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("dashboard stopped", "error", err)
		}
	}()
	go func() { <-ctx.Done(); srv.Close() }()
	return scheme + ln.Addr().String(), nil
}
