package temporalserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// webUI is the Temporal Web UI (github.com/temporalio/ui-server) serving its
// embedded assets and proxying API calls to our frontend over gRPC.
type webUI struct {
	srv  *uiserver.Server
	addr string // http://host:port
	done chan struct{}
}

func startUI(ctx context.Context, bindHost, dialHost string, port int, frontendHostPort, namespace string) (_ *webUI, err error) {
	cfg := &uiconfig.Config{
		Host:                bindHost,
		Port:                port,
		TemporalGRPCAddress: frontendHostPort,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		// Local, plain-HTTP use: the CSRF cookie must not be marked Secure
		// or the browser drops it and every write action fails.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		HideLogs:         true,
		DisableNewsFetch: true,
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("web ui config: %w", err)
	}

	// uiserver.NewServer panics instead of returning errors.
	var srv *uiserver.Server
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("web ui: %v", r)
			}
		}()
		srv = uiserver.NewServer(uioptions.WithConfigProvider(cfg))
	}()
	if err != nil {
		return nil, err
	}

	ui := &webUI{srv: srv, addr: "http://" + joinHostPort(dialHost, port), done: make(chan struct{})}
	go func() {
		defer close(ui.done)
		// Start blocks until Stop. A listen failure would make it exit the
		// process (echo's Logger.Fatal); the caller has checked that the
		// port is free just before.
		_ = srv.Start()
	}()

	if err := waitHTTP(ctx, ui.addr+"/healthz"); err != nil {
		ui.stop()
		return nil, fmt.Errorf("web ui did not come up on %s: %w", ui.addr, err)
	}
	return ui, nil
}

func (u *webUI) stop() {
	u.srv.Stop()
	select {
	case <-u.done:
	case <-time.After(5 * time.Second):
	}
}

// waitHTTP polls url until it answers 200 OK.
func waitHTTP(ctx context.Context, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
