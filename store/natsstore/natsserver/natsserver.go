// Package natsserver runs a NATS server with JetStream inside this process, for
// `burla dev` and tests. It is apart from natsstore so that programs that only talk
// to a store do not link a server.
package natsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	// Keys, when set, admits only clients presenting an API key (see Authenticator),
	// and ends a client's connection within revocationPoll of its key's revoke.
	Keys *auth.Keys
	// Logger receives refusals; nil discards them.
	Logger *slog.Logger
	// TenantLimits bound what each tenant's account holds, so that one tenant
	// cannot fill the server's disk or memory for every other. They need Keys:
	// without, every client shares one account and there is no tenant to bound.
	// A single server reserves each account's bound on its disk when it makes the
	// account (on the tenant's first connection): once the bounds of the tenants
	// connected since it started add up to more than three quarters of the disk
	// it had free, it admits no new tenant.
	TenantLimits TenantLimits
	// TLS, when set, makes the client port serve TLS only, with TLS's certificate;
	// a client that does not start TLS is refused before it can present a key.
	// With ClientAuth tls.RequireAndVerifyClientCert (and ClientCAs), clients
	// must present a certificate too: mutual TLS. URL then begins tls://.
	TLS *tls.Config
}

// TenantLimits bound each tenant's JetStream account; a zero field bounds nothing.
// A tenant over a bound has its writes refused by the server with
// "resource limits exceeded for account" (natsstore.ErrTenantLimit, through
// natsstore.Tenants), and other tenants write on.
type TenantLimits struct {
	// StoreMB bounds the megabytes a tenant's streams, buckets and object stores
	// hold on disk. With it, a tenant keeps nothing in memory: the store keeps
	// none of a tenant's data there, a tenant's own key could otherwise fill the
	// server's memory with streams of its own making, and a memory bound per
	// tenant would be reserved out of the server's memory (see Config).
	StoreMB int
	// Streams bounds a tenant's streams, at least StoreStreams, which the store
	// makes in every account: a tenant's key could make any number more.
	Streams int
	// Consumers bounds a tenant's consumers: the store makes one for each job's
	// inputs and one for each watch of its results and logs while it lasts.
	Consumers int
}

// StoreStreams is how many streams natsstore makes in each account: its input,
// result and log streams, its two buckets and its two object stores.
const StoreStreams = 7

// Validate reports the first thing wrong with l.
func (l TenantLimits) Validate() error {
	switch {
	case l.StoreMB < 0 || l.Streams < 0 || l.Consumers < 0:
		return fmt.Errorf("tenant limits %+v: a limit is negative", l)
	case l.Streams > 0 && l.Streams < StoreStreams:
		return fmt.Errorf("a tenant limit of %d streams is less than the %d the store makes in each tenant's account", l.Streams, StoreStreams)
	}
	return nil
}

// IsZero reports whether l bounds nothing.
func (l TenantLimits) IsZero() bool { return l == TenantLimits{} }

// jetStream is l as the server takes it: -1 is no bound.
func (l TenantLimits) jetStream() map[string]server.JetStreamAccountLimits {
	orNone := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	store, memory := int64(-1), int64(-1)
	if l.StoreMB > 0 {
		store, memory = int64(l.StoreMB)<<20, 0
	}
	return map[string]server.JetStreamAccountLimits{"": {
		MaxMemory: memory, MaxStore: store, MaxStreams: orNone(l.Streams), MaxConsumers: orNone(l.Consumers),
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, StoreMaxStreamBytes: -1,
	}}
}

// Server is a NATS server with JetStream running inside this process.
type Server struct {
	ns   *server.Server
	auth *Authenticator // nil without keys

	stopWatch func() // stops the revocation watch and waits for it; nil without keys
}

// revocationPoll is how often a server with keys reads the keys file again to
// close the connections of keys revoked: a revoked key's live connection could
// otherwise go on reading and writing its tenant's data for as long as it stays
// up. Reading a small file four times a second costs nothing to speak of.
const revocationPoll = 250 * time.Millisecond

// Start starts an embedded NATS server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if err := cfg.TenantLimits.Validate(); err != nil {
		return nil, fmt.Errorf("start NATS server: %w", err)
	}
	if !cfg.TenantLimits.IsZero() && cfg.Keys == nil {
		return nil, fmt.Errorf("start NATS server: tenant limits need API keys: without them every client shares one account, and no tenant can be told apart")
	}
	if cfg.StoreDir != "" {
		// Every tenant's inputs, results and programs are in there: no other user
		// of the machine may enter.
		if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
			return nil, fmt.Errorf("start NATS server: %w", err)
		}
		if err := os.Chmod(cfg.StoreDir, 0o700); err != nil {
			return nil, fmt.Errorf("start NATS server: %w", err)
		}
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
	if cfg.TLS != nil {
		if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
			return nil, errors.New("start NATS server: the TLS configuration has no certificate")
		}
		opts.TLSConfig = cfg.TLS.Clone()
		opts.TLSConfig.MinVersion = max(opts.TLSConfig.MinVersion, tls.VersionTLS12)
	}
	var a *Authenticator
	if cfg.Keys != nil {
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		a = &Authenticator{keys: cfg.Keys, log: log, conns: map[uint64]admitted{}, limits: cfg.TenantLimits}
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
	s := &Server{ns: ns, auth: a}
	if a != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.watch(ctx, revocationPoll)
		}()
		s.stopWatch = func() { cancel(); <-done }
	}
	return s, nil
}

// URL is the address clients connect to: nats://host:port, or tls://host:port
// with TLS.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	if s.stopWatch != nil {
		s.stopWatch()
	}
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
	keys   *auth.Keys
	log    *slog.Logger
	srv    *server.Server
	limits TenantLimits // every tenant's account's

	mu sync.Mutex // serialises making accounts

	connsMu sync.Mutex
	conns   map[uint64]admitted // by client ID, the clients admitted, until they go
}

// admitted is the key a client was admitted with, by hash: the server keeps no key.
type admitted struct {
	sum string
	p   auth.Principal
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
	a.connsMu.Lock()
	a.conns[c.GetID()] = admitted{sum: auth.Hash(key), p: p}
	a.connsMu.Unlock()
	return true
}

// watch reads the keys file again every interval, and closes the connections of
// keys no longer in it, until ctx is done. Their clients reconnect and are refused:
// Check asks the same Keys, which no longer holds them.
//
// It looks at every admitted client each time, not only when the file changed: a
// client admitted by a Lookup that raced the reload, with the keys read before it,
// is recorded after the reload and must still be caught.
func (a *Authenticator) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.keys.Refresh(); err != nil {
			// Keys keeps the keys read last; say so once, not four times a second.
			if err.Error() != lastErr {
				a.log.Warn("NATS: could not read the keys file again; keeping the keys read last", "error", err)
			}
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		a.closeRevoked()
	}
}

// closeRevoked closes the connections of keys no longer admitted, and forgets
// clients that have gone.
func (a *Authenticator) closeRevoked() {
	type revoked struct {
		id uint64
		admitted
	}
	var kick []revoked
	a.connsMu.Lock()
	for id, ad := range a.conns {
		switch {
		case a.srv.GetClient(id) == nil:
			delete(a.conns, id)
		case !a.keys.Admits(ad.sum, ad.p):
			delete(a.conns, id)
			kick = append(kick, revoked{id, ad})
		}
	}
	a.connsMu.Unlock()
	for _, r := range kick {
		if err := a.srv.DisconnectClientByID(r.id); err != nil {
			continue // it went meanwhile
		}
		a.log.Info("NATS client disconnected: its key was revoked", "key", r.p.ID, "role", r.p.Role, "tenant", r.p.Tenant, "client", r.id)
	}
}

// account returns tenant's account, made with JetStream, within the tenant
// limits, on first use.
func (a *Authenticator) account(tenant string) (*server.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, isNew := a.srv.LookupOrRegisterAccount(TenantAccount(tenant))
	if isNew || !acc.JetStreamEnabled() {
		var limits map[string]server.JetStreamAccountLimits // nil: no bound
		if !a.limits.IsZero() {
			limits = a.limits.jetStream()
		}
		if err := acc.EnableJetStream(limits, nil); err != nil {
			if limits != nil && server.IsNatsErr(err, server.JSStorageResourcesExceededErr) {
				return nil, fmt.Errorf("enable JetStream for %s: the server reserves each tenant's %d MB on its disk, and has too little left for another tenant: lower the tenant limit: %w",
					acc.Name, a.limits.StoreMB, err)
			}
			return nil, fmt.Errorf("enable JetStream for %s: %w", acc.Name, err)
		}
		if isNew && limits != nil {
			a.log.Info("NATS: tenant account made", "tenant", tenant, "max_store_mb", a.limits.StoreMB,
				"max_streams", a.limits.Streams, "max_consumers", a.limits.Consumers)
		}
	}
	return acc, nil
}
