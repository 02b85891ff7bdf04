// Package temporalserver runs a Temporal server inside the current process,
// for `burla dev`.
//
// The server is the real go.temporal.io/server (frontend, history, matching
// and worker services in one process) backed by SQLite, in the spirit of the
// Temporal CLI's `temporal server start-dev`: state lives in one file under
// Config.DataDir, so workflow histories survive restarts. Everything listens on
// loopback only (except the frontend and the Web UI, which listen on
// Config.Host, 127.0.0.1 by default). Given a certificate (Config.TLS), the
// frontend serves TLS only. The internal services find each other
// through static host lists rather than ringpop, so no membership / gossip
// ports are opened at all, and they speak mutual TLS with certificates made in
// memory at Start, since any process on the machine can reach loopback (see
// internodeTLS).
package temporalserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/resolver"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/burla-temporal/burla/auth"
)

const (
	defaultHost      = "127.0.0.1"
	defaultNamespace = "default"
	loopback         = "127.0.0.1"

	// dbFileName is the SQLite file inside Config.DataDir.
	dbFileName = "temporal.db"
	// clusterName is the name of our single-node cluster.
	clusterName = "active"
	// namespaceRetention is how long closed workflows are kept. It applies
	// when the namespace is first created only.
	namespaceRetention = 72 * time.Hour
	// readyTimeout bounds how long Start waits for the server to answer
	// when ctx has no earlier deadline.
	readyTimeout = 2 * time.Minute
	// namespaceCacheRefresh is the server's default namespace registry
	// refresh interval (system.namespaceCacheRefreshInterval).
	namespaceCacheRefresh = 2 * time.Second
)

// Config configures the embedded server. The zero value is usable: an
// in-memory server on a free port of 127.0.0.1, with the Web UI on another.
type Config struct {
	// DataDir is the directory for the SQLite database file
	// (DataDir/temporal.db); it is created if missing. Empty means an
	// in-memory database, lost when the process exits (for tests).
	DataDir string
	// Host is the IP address the frontend and the Web UI listen on.
	// Default "127.0.0.1". The internal services always use 127.0.0.1.
	Host string
	// Port is the frontend gRPC port; 0 picks a free port.
	Port int
	// UIPort is the Temporal Web UI HTTP port; 0 picks a free port and -1
	// disables the UI.
	UIPort int
	// Namespace is created if missing. Default "default".
	Namespace string
	// Logger receives the server's logs, WARN and above only. Nil discards
	// them.
	Logger *slog.Logger
	// SearchAttributes are custom search attributes to register in the
	// namespace. Ones already registered (with the same type) are left
	// alone, so this is idempotent across restarts.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Keys, when set, makes the frontend admit only callers with an API key and
	// keep each tenant to its own jobs (see guard). The server's own worker
	// service then reaches it through an internal frontend on loopback, which
	// admits only the holders of the server's internode certificate, and the Web
	// UI, which cannot present a key, is not started.
	Keys *auth.Keys
	// TLS, when set, makes the public frontend serve TLS only, with TLS's
	// certificate (Certificates[0]), and ask clients for a certificate of theirs
	// when TLS says so (ClientAuth and ClientCAs: mutual TLS). Clients find the CA
	// through package temporalconn (BURLA_TEMPORAL_TLS_CA). API keys, if any, are
	// asked for as well. The server's own clients of the frontend trust exactly
	// its certificate and present the internode one (see internodeTLS.frontend).
	// The Web UI, which serves plain HTTP, is not started: it would show every
	// workflow in the clear beside a frontend that hides them.
	TLS *tls.Config
	// SuggestContinueAsNewAfter is the history length, in events, at which the
	// server suggests that a workflow continue as new; zero is Temporal's
	// default (4 Ki). Tests set it low to make long-running workflows cross
	// many runs.
	SuggestContinueAsNewAfter int
}

// Server is a running embedded Temporal server.
type Server struct {
	srv       temporal.Server
	ui        *webUI
	logLevel  *slog.LevelVar
	frontend  string
	dial      string      // the frontend this process's clients use: the internal one when keys are on
	dialTLS   *tls.Config // how they reach it: the internode client config for the internal frontend
	namespace string

	stopOnce sync.Once
	stopErr  error
}

// Start starts the server and returns once the frontend accepts
// connections, the namespace exists and the search attributes are usable. ctx
// bounds the wait (and the whole start-up); cancelling it later has no effect
// on the running server, use Stop.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Host == "" {
		cfg.Host = defaultHost
	}
	if cfg.Namespace == "" {
		cfg.Namespace = defaultNamespace
	}
	bindIP, err := parseHost(cfg.Host)
	if err != nil {
		return nil, err
	}
	dialIP := bindIP
	if ip := net.ParseIP(bindIP); ip.IsUnspecified() {
		dialIP = loopback
	}
	for name, typ := range cfg.SearchAttributes {
		if name == "" || typ == enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED {
			return nil, fmt.Errorf("temporal server: invalid search attribute %q of type %v", name, typ)
		}
	}
	if cfg.UIPort < -1 || cfg.Port < 0 {
		return nil, errors.New("temporal server: invalid port")
	}

	logLevel := new(slog.LevelVar)
	logLevel.Set(levelRunning)
	sl := quietSlog(cfg.Logger, logLevel)
	logger := newServerLogger(sl, cfg.Logger)

	// Reserve every port at once so that they are distinct and the
	// explicitly requested ones are known to be free: the server and the UI
	// exit the process when they cannot listen. They are held until just
	// before the server is built.
	var ports, uiHold portReserver
	defer ports.release()
	defer uiHold.release()
	frontendPort, err := ports.reserve(bindIP, cfg.Port)
	uiPort := -1
	var uiOff string // why the UI is not started
	switch {
	case cfg.Keys != nil:
		uiOff = "it cannot present an API key"
	case cfg.TLS != nil:
		uiOff = "it serves plain HTTP, and the frontend TLS only"
	}
	if uiOff != "" && cfg.UIPort >= 0 {
		logger.Info("the Temporal Web UI is off: " + uiOff)
	}
	if err == nil && cfg.UIPort >= 0 && uiOff == "" {
		uiPort, err = uiHold.reserve(bindIP, cfg.UIPort)
	}
	internal := map[primitives.ServiceName]int{}
	services := []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService}
	if cfg.Keys != nil {
		services = append(services, primitives.InternalFrontendService)
	}
	for _, svc := range services {
		if err != nil {
			break
		}
		internal[svc], err = ports.reserve(loopback, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}

	sqlCfg, err := sqliteConfig(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := prepareDatabase(sqlCfg, cfg.DataDir != "", cfg.Namespace, cfg.SearchAttributes); err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}

	// Always, keys or not: one mode, and the cost does not show (see
	// BenchmarkWorkflows).
	internode, err := newInternodeTLS()
	if err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}
	frontend := joinHostPort(dialIP, frontendPort)
	serverCfg := serverConfig(sqlCfg, bindIP, frontendPort, frontend, internal)
	// Without a certificate the public frontend stays plaintext (nil, nil).
	var frontendServer, frontendClient *tls.Config
	if cfg.TLS != nil {
		if frontendServer, frontendClient, err = internode.frontend(cfg.TLS); err != nil {
			return nil, fmt.Errorf("temporal server: %w", err)
		}
	}
	opts := []temporal.ServerOption{temporal.WithTLSConfigFactory(internode.provider(frontendServer, frontendClient))}
	serviceNames := temporal.DefaultServices
	dial := frontend // where this process's own client reaches the server
	dialTLS := frontendClient
	if cfg.Keys != nil {
		g := &guard{keys: cfg.Keys, internalPort: strconv.Itoa(internal[primitives.InternalFrontendService]), internode: internode, log: sl}
		opts = append(opts, temporal.WithChainedFrontendGrpcInterceptors(g.unary), temporal.WithAdditionalStreamInterceptors(g.stream))
		serverCfg.PublicClient.HostPort = "" // the worker service finds the internal frontend
		dial = joinHostPort(loopback, internal[primitives.InternalFrontendService])
		dialTLS = internode.client
		serviceNames = append(slices.Clone(serviceNames), string(primitives.InternalFrontendService))
	}
	hosts := map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(frontend),
	}
	for svc, port := range internal {
		hosts[svc] = static.SingleLocalHost(joinHostPort(loopback, port))
	}

	dyn := dynamicconfig.StaticClient{
		// The defaults are sized for a production host.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
		// The Web UI polls visibility APIs; 10 rps is easily exceeded.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// One matching host: with the default four partitions per task queue a
		// task often lands on a partition no poller waits on and is matched only
		// after forwarding, which cost each dispatch about 40 ms here.
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
	}
	if cfg.SuggestContinueAsNewAfter > 0 {
		dyn[dynamicconfig.HistoryCountSuggestContinueAsNew.Key()] = cfg.SuggestContinueAsNewAfter
	}
	// NewServer already opens the gRPC listeners.
	ports.release()
	srv, err := temporal.NewServer(append(opts,
		temporal.WithConfig(serverCfg),
		temporal.ForServices(serviceNames),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper {
			return authorization.NewNoopClaimMapper()
		}),
		temporal.WithDynamicConfigClient(dyn),
	)...)
	if err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		logLevel.Set(levelStopped)
		_ = srv.Stop()
		return nil, fmt.Errorf("temporal server: start: %w", err)
	}
	s := &Server{srv: srv, frontend: frontend, dial: dial, dialTLS: dialTLS, namespace: cfg.Namespace, logLevel: logLevel}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.awaitReady(ctx, sl, cfg.SearchAttributes); err != nil {
		return nil, fmt.Errorf("temporal server: %w", err)
	}
	if uiPort >= 0 {
		uiHold.release()
		if s.ui, err = startUI(ctx, bindIP, dialIP, uiPort, frontend, cfg.Namespace); err != nil {
			return nil, fmt.Errorf("temporal server: %w", err)
		}
	}
	return s, nil
}

// FrontendHostPort is the host:port Temporal clients connect to.
func (s *Server) FrontendHostPort() string { return s.frontend }

// UIAddress is the Web UI's base URL, "http://127.0.0.1:PORT", or "" when the
// UI is disabled.
func (s *Server) UIAddress() string {
	if s.ui == nil {
		return ""
	}
	return s.ui.addr
}

// Namespace is the namespace Start made sure exists.
func (s *Server) Namespace() string { return s.namespace }

// Stop shuts the UI and the server down. It is safe to call more than once.
//
// The SQLite connection is deliberately kept open by the server's SQLite
// plugin for the life of the process, so a Server can be started again on the
// same DataDir in the same process.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		// Shutdown noise only; see levelStopped.
		s.logLevel.Set(levelStopped)
		if s.ui != nil {
			s.ui.stop()
		}
		s.stopErr = s.srv.Stop()
	})
	return s.stopErr
}

// awaitReady waits for the frontend to answer and the namespace to be
// loaded, then registers missing search attributes.
func (s *Server) awaitReady(ctx context.Context, sl *slog.Logger, want map[string]enumspb.IndexedValueType) error {
	var c client.Client
	err := retry(ctx, func() (err error) {
		c, err = client.DialContext(ctx, client.Options{
			HostPort:          s.dial,
			Namespace:         s.namespace,
			ConnectionOptions: client.ConnectionOptions{TLS: s.dialTLS},
			Logger:            sdklog.NewStructuredLogger(sl),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("frontend %s not reachable: %w", s.dial, err)
	}
	defer c.Close()

	err = retry(ctx, func() error {
		_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.namespace})
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %q not ready: %w", s.namespace, err)
	}
	return EnsureSearchAttributes(ctx, c, s.namespace, want)
}

// EnsureSearchAttributes registers the search attributes of want that the
// namespace lacks, and waits until the frontend accepts them in queries. It works
// against any Temporal whose operator API the client may use, not only this
// package's server.
func EnsureSearchAttributes(ctx context.Context, c client.Client, ns string, want map[string]enumspb.IndexedValueType) error {
	if len(want) == 0 {
		return nil
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		if have, ok := resp.GetCustomAttributes()[name]; ok {
			if have != typ {
				return fmt.Errorf("search attribute %q is registered as %v, want %v", name, have, typ)
			}
			continue
		}
		if _, ok := resp.GetSystemAttributes()[name]; ok {
			return fmt.Errorf("search attribute %q is a system search attribute", name)
		}
		missing[name] = typ
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        ns,
		SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	// With SQL visibility, adding a search attribute updates the namespace
	// record; each service sees it at its next namespace cache refresh.
	for name := range missing {
		err := retry(ctx, func() error {
			_, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Namespace: ns,
				Query:     "`" + name + "` IS NOT NULL",
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("search attribute %q not usable: %w", name, err)
		}
	}
	// The frontend has it; give history and matching one refresh period
	// too.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(namespaceCacheRefresh):
	}
	return nil
}

// sqliteConfig returns the SQLite store configuration: a file in dataDir, or
// a private in-memory database when dataDir is empty.
func sqliteConfig(dataDir string) (*config.SQL, error) {
	cfg := &config.SQL{PluginName: sqliteplugin.PluginName}
	if dataDir == "" {
		// The plugin creates the schema when it first opens an in-memory
		// database, and keeps it open for the life of the process.
		cfg.DatabaseName = "burla-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		cfg.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		return cfg, nil
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("temporal server: data dir: %w", err)
	}
	// Every workflow's history is in there: no other user may enter.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("temporal server: data dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("temporal server: data dir: %w", err)
	}
	cfg.DatabaseName = filepath.Join(dir, dbFileName)
	cfg.ConnectAttributes = map[string]string{
		"mode": "rwc",
		// The plugin uses a single connection, so WAL is safe; it makes
		// commits much cheaper, and synchronous=NORMAL is still crash-safe
		// (a power loss may lose the last transactions, never corrupt).
		"journal_mode": "wal",
		"synchronous":  "NORMAL",
	}
	return cfg, nil
}

// prepareDatabase creates the schema in an empty database file and the
// namespace if it does not exist yet.
func prepareDatabase(sqlCfg *config.SQL, file bool, namespace string, sas map[string]enumspb.IndexedValueType) error {
	if file {
		db, err := sql.NewSQLAdminDB(sqlplugin.DbKindUnknown, sqlCfg, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
		if err != nil {
			return fmt.Errorf("open %s: %w", sqlCfg.DatabaseName, err)
		}
		tables, err := db.ListTables(sqlCfg.DatabaseName)
		if err == nil && len(tables) == 0 {
			err = sqliteschema.SetupSchemaOnDB(db)
		}
		_ = db.Close()
		if err != nil {
			return fmt.Errorf("set up schema in %s: %w", sqlCfg.DatabaseName, err)
		}
	}

	// A new namespace gets the search attributes right away; for an
	// existing one this is a no-op and Start adds any missing ones through
	// the operator API.
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, namespace, false, sas)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", namespace, err)
	}
	ns.Detail.Config.Retention = durationpb.New(namespaceRetention)
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return fmt.Errorf("namespace %q: %w", namespace, err)
	}
	return nil
}

// serverConfig builds the static server configuration: one node, one shard,
// SQLite for both persistence and visibility, no archival, no metrics.
func serverConfig(sqlCfg *config.SQL, bindIP string, frontendPort int, frontend string, internal map[primitives.ServiceName]int) *config.Config {
	const store = "sqlite"
	cfg := &config.Config{}
	cfg.Persistence = config.Persistence{
		DefaultStore:     store,
		VisibilityStore:  store,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{store: {SQL: sqlCfg}},
	}
	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend},
		},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: frontendPort, BindOnIP: bindIP}},
	}
	for svc, port := range internal {
		cfg.Services[string(svc)] = config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: loopback}}
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The worker service (system workflows) connects back to the frontend.
	cfg.PublicClient.HostPort = frontend
	// Global.Metrics nil: no metrics listener. Global.PProf.Port 0: no pprof.
	return cfg
}

// parseHost accepts an IP address or "localhost".
func parseHost(host string) (string, error) {
	if strings.EqualFold(host, "localhost") {
		return loopback, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("temporal server: host %q is not an IP address", host)
	}
	return ip.String(), nil
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// portReserver holds listeners open so that ports picked one after another
// are distinct.
type portReserver struct{ ls []net.Listener }

func (r *portReserver) reserve(ip string, port int) (int, error) {
	l, err := net.Listen("tcp", joinHostPort(ip, port))
	if err != nil {
		if port != 0 {
			return 0, fmt.Errorf("port %d on %s is not available: %w", port, ip, err)
		}
		return 0, fmt.Errorf("no free port on %s: %w", ip, err)
	}
	r.ls = append(r.ls, l)
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *portReserver) release() {
	for _, l := range r.ls {
		_ = l.Close()
	}
	r.ls = nil
}

// retry calls f every 100ms until it succeeds or ctx is done. Every error
// is considered transient: while the server starts, the frontend refuses
// connections, does not know the namespace yet, or rejects a search attribute
// it has not picked up yet.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
