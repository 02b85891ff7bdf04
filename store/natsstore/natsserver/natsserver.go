// Package natsserver runs a NATS server with JetStream inside this process, for
// `burla dev` and tests. It is apart from natsstore so that programs that only talk
// to a store do not link a server.
package natsserver

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
)

// Config configures an embedded NATS server with JetStream.
type Config struct {
	Host     string // default 127.0.0.1
	Port     int    // 0 picks a free port
	StoreDir string // JetStream's directory; empty keeps everything in a temporary directory
	// Keys, when set, admits only clients presenting an API key (see Authenticator).
	Keys *auth.Keys
	// Logger receives refusals; nil discards them.
	Logger *slog.Logger
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
	var a *Authenticator
	if cfg.Keys != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		a = &Authenticator{keys: cfg.Keys, log: log}
		opts.CustomClientAuthentication = a
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start NATS server: %w", err)
	}
	if a != nil {
		a.srv = ns
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

// Authenticator admits NATS clients by the API key they present (as a token, or
// as a password) and puts each tenant in a NATS account of its own, whose
// JetStream streams, buckets and object store no other tenant can see: account
// isolation is NATS's own, so a tenant's permissions within its account need no
// subject rules that could be got wrong.
//
// The cluster's own components (keys of a system role) land in the global
// account, where node records live, unless they name a tenant as their user name:
// then they land in that tenant's account, to work on its jobs
// (natsstore.Tenants does this).
type Authenticator struct {
	keys *auth.Keys
	log  *slog.Logger
	srv  *server.Server

	mu sync.Mutex // serialises making accounts
}

// TenantAccount is the name of a tenant's NATS account.
func TenantAccount(tenant string) string { return "tenant-" + tenant }

// Check implements server.Authentication.
func (a *Authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	key := o.Token
	if key == "" {
		key = o.Password
	}
	p, err := a.keys.Lookup(key)
	if err != nil {
		a.log.Info("NATS client refused", "remote", c.RemoteAddress(), "error", err)
		return false
	}
	tenant := p.Tenant
	switch {
	case p.Role == auth.RoleTenant && o.Username != "" && o.Username != p.Tenant:
		a.log.Info("NATS client refused: a tenant's key used for another tenant", "key", p.ID, "tenant", p.Tenant, "asked", o.Username)
		return false
	case p.Role.System():
		tenant = o.Username
		if tenant != "" && !job.ValidTenant(tenant) {
			a.log.Info("NATS client refused: invalid tenant", "key", p.ID, "asked", o.Username)
			return false
		}
	}
	acc := a.srv.GlobalAccount()
	if tenant != "" {
		if acc, err = a.account(tenant); err != nil {
			a.log.Warn("NATS: could not make a tenant's account", "tenant", tenant, "error", err)
			return false
		}
	}
	c.RegisterUser(&server.User{Username: string(p.Role) + ":" + p.ID, Account: acc})
	return true
}

// account returns tenant's account, made with JetStream on first use.
func (a *Authenticator) account(tenant string) (*server.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, isNew := a.srv.LookupOrRegisterAccount(TenantAccount(tenant))
	if isNew || !acc.JetStreamEnabled() {
		if err := acc.EnableJetStream(nil, nil); err != nil {
			return nil, fmt.Errorf("enable JetStream for %s: %w", acc.Name, err)
		}
	}
	return acc, nil
}
