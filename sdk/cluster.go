package burla

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
)

// Config says where a cluster is.
type Config struct {
	TemporalAddress string // host:port of Temporal's frontend
	Namespace       string
	// StoreURL names the data plane: nats://host:port (burla dev, self-hosted) or
	// firestore://PROJECT?bucket=BUCKET (Google Cloud); see package storeurl.
	StoreURL string
	// TemporalSecurity is TLS and an API key or client certificate for a Temporal
	// that needs them (Temporal Cloud); ConfigFromEnv reads it from
	// BURLA_TEMPORAL_API_KEY and the other variables of package temporalconn.
	TemporalSecurity temporalconn.Security
	// APIKey is the key a cluster that asks for one admits this program by
	// (BURLA_API_KEY); it names the tenant the program's jobs belong to.
	APIKey string
	Logger *slog.Logger // for the Temporal client; nil discards
}

// ConfigFromEnv reads BURLA_TEMPORAL_ADDRESS, BURLA_NAMESPACE and BURLA_STORE_URL
// (or, as before it, BURLA_NATS_URL), defaulting to the addresses `burla dev` serves on.
func ConfigFromEnv() Config {
	return Config{
		TemporalAddress:  envOr("BURLA_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		Namespace:        envOr("BURLA_NAMESPACE", "default"),
		StoreURL:         envOr("BURLA_STORE_URL", envOr("BURLA_NATS_URL", storeurl.Default)),
		TemporalSecurity: temporalconn.FromEnv(),
		APIKey:           os.Getenv(auth.EnvKey),
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Cluster is a connection to a cluster: its Temporal namespace and its store. It is
// safe for concurrent use; keep one for the life of the program.
type Cluster struct {
	cfg    Config
	tenant string // whose jobs this connection starts
	system bool   // the key is an operator's or a component's: every tenant's jobs are visible
	tc     client.Client
	st     store.Backend

	mu       sync.Mutex
	uploaded map[string]bool // binary digests known to be in the blob store
	// uploading are the uploads under way, by digest: jobs started at once from
	// one program share one upload (fifty concurrent puts of one 60 MB program
	// drew "too many requests" from NATS).
	uploading map[string]chan struct{}
	envs      map[string]control.EnvInfo // what each built environment can run
}

const dialTimeout = 3 * time.Second

// Dial connects to the cluster described by cfg. It fails within a few seconds with
// an *Error of kind KindNoCluster when nothing answers.
func Dial(ctx context.Context, cfg Config) (*Cluster, error) {
	def := ConfigFromEnv()
	if cfg.TemporalAddress == "" {
		cfg.TemporalAddress = def.TemporalAddress
	}
	if cfg.Namespace == "" {
		cfg.Namespace = def.Namespace
	}
	if cfg.StoreURL == "" {
		cfg.StoreURL = def.StoreURL
	}
	if cfg.TemporalSecurity == (temporalconn.Security{}) {
		cfg.TemporalSecurity = def.TemporalSecurity
	}
	if cfg.APIKey == "" {
		cfg.APIKey = def.APIKey
	}
	tenant, system := job.DefaultTenant, false
	if cfg.APIKey != "" {
		p, err := auth.ParseKey(cfg.APIKey)
		if err != nil {
			return nil, &Error{Kind: KindUnauthorized, Index: -1, Err: err, Msg: "the API key is malformed"}
		}
		if p.Role == auth.RoleTenant {
			tenant = p.Tenant
		}
		system = p.Role.System()
		cfg.TemporalSecurity.Key = cfg.APIKey
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	noCluster := func(what string, err error) error {
		return &Error{Kind: KindNoCluster, Index: -1, Err: err,
			Msg: fmt.Sprintf("no cluster reachable (%s); start one with `burla dev`, or point BURLA_TEMPORAL_ADDRESS and BURLA_STORE_URL at a running cluster", what)}
	}
	topts := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	tc, err := cfg.TemporalSecurity.Dial(dctx, topts)
	if errors.Is(err, temporalconn.ErrSettings) {
		return nil, &Error{Kind: KindNoCluster, Index: -1, Err: err, Msg: "the Temporal connection's TLS settings are wrong"}
	}
	if err != nil {
		if e := unauthorized(err); e != nil {
			return nil, e
		}
		return nil, noCluster("Temporal at "+cfg.TemporalAddress, err)
	}
	st, err := storeurl.OpenKey(dctx, cfg.StoreURL, "burla-sdk", cfg.APIKey)
	if err != nil {
		tc.Close()
		if errors.Is(err, nats.ErrAuthorization) {
			what := "the API key"
			if cfg.APIKey == "" {
				what = "a client without an API key (set BURLA_API_KEY or pass burla.APIKey)"
			}
			return nil, &Error{Kind: KindUnauthorized, Index: -1, Err: err, Msg: "the store at " + cfg.StoreURL + " refused " + what}
		}
		return nil, noCluster("store at "+cfg.StoreURL, err)
	}
	return &Cluster{cfg: cfg, tenant: tenant, system: system, tc: tc, st: st, uploaded: map[string]bool{}, uploading: map[string]chan struct{}{}, envs: map[string]control.EnvInfo{}}, nil
}

// unauthorized turns Temporal's refusal of a call into an *Error of kind
// KindUnauthorized, or returns nil for any other error.
func unauthorized(err error) error {
	var denied *serviceerror.PermissionDenied
	switch {
	case status.Code(err) == codes.Unauthenticated:
		return &Error{Kind: KindUnauthorized, Index: -1, Err: err, Msg: "the cluster needs an API key it knows: set BURLA_API_KEY or pass burla.APIKey (" + status.Convert(err).Message() + ")"}
	case errors.As(err, &denied):
		return &Error{Kind: KindUnauthorized, Index: -1, Err: err, Msg: denied.Message}
	}
	return nil
}

// Tenant is the tenant whose jobs this connection starts: the API key's, or
// "default" on a cluster without keys.
func (c *Cluster) Tenant() string { return c.tenant }

// Close releases the connections.
func (c *Cluster) Close() {
	c.tc.Close()
	c.st.Close()
}

// Temporal is the cluster's Temporal client, for tools that inspect workflows.
func (c *Cluster) Temporal() client.Client { return c.tc }

// Store is the cluster's data plane: job records, results, logs and node records.
func (c *Cluster) Store() store.Backend { return c.st }

var defaultCluster struct {
	sync.Mutex
	byKey map[string]*Cluster
}

// clusterFor returns the cluster named by o, or the process-wide default cluster
// for o's API key, dialled on first use and kept so that later calls start warm.
func clusterFor(ctx context.Context, o *options) (*Cluster, error) {
	if o.cluster != nil {
		if o.apiKey != "" && o.apiKey != o.cluster.cfg.APIKey {
			return nil, errors.New("burla: APIKey and OnCluster both given: dial the cluster with Config.APIKey instead")
		}
		return o.cluster, nil
	}
	cfg := ConfigFromEnv()
	if o.apiKey != "" {
		cfg.APIKey = o.apiKey
	}
	defaultCluster.Lock()
	defer defaultCluster.Unlock()
	if c := defaultCluster.byKey[cfg.APIKey]; c != nil {
		return c, nil
	}
	c, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if defaultCluster.byKey == nil {
		defaultCluster.byKey = map[string]*Cluster{}
	}
	defaultCluster.byKey[cfg.APIKey] = c
	return c, nil
}

// The program that ships itself: found, or built, and hashed once per process.
var self struct {
	sync.Mutex
	path   string
	digest string
	err    error // a failure that trying again would repeat
}

// binaryFor returns the path and SHA-256 of the executable to ship: the one
// Binary names, or the running program, or, if that cannot run on the nodes, a
// build of it for them (selfbuild.go).
func binaryFor(ctx context.Context, o *options) (path, digest string, err error) {
	if o.binary != "" {
		d, err := checkBinary(o.binary)
		return o.binary, d, err
	}
	self.Lock()
	defer self.Unlock()
	if self.path != "" || self.err != nil {
		return self.path, self.digest, self.err
	}
	path, err = selfBinary(ctx, o)
	if err == nil {
		digest, err = checkBinary(path)
	}
	if err != nil && ctx.Err() != nil {
		return "", "", err // the caller gave up: the next call tries again
	}
	self.path, self.digest, self.err = path, digest, err
	return path, digest, err
}

// selfBinary is the running program's executable if it runs on the nodes, or
// else a build of it that does.
func selfBinary(ctx context.Context, o *options) (string, error) {
	if hostPlatform == nodePlatform {
		path, err := os.Executable()
		if err != nil {
			return "", &Error{Kind: KindBadBinary, Index: -1, Msg: "find the running executable", Err: err}
		}
		return path, nil
	}
	b, err := newBuilder(func(format string, args ...any) { fmt.Fprintf(o.stderr, format+"\n", args...) })
	var path string
	if err == nil {
		path, err = b.build(ctx, nodePlatform)
	}
	if err != nil {
		return "", &Error{Kind: KindBadBinary, Index: -1, Err: err, Msg: fmt.Sprintf(
			"this program is %s and the cluster's nodes run %s, and building it for them failed (build it yourself with `GOOS=%s GOARCH=%s CGO_ENABLED=0 go build -o prog-linux .` and pass burla.Binary(\"prog-linux\"))",
			hostPlatform, nodePlatform, nodePlatform.os, nodePlatform.arch)}
	}
	return path, nil
}

// checkBinary makes sure path can run on the nodes and returns its SHA-256.
func checkBinary(path string) (string, error) {
	bad := func(msg string, err error) (string, error) {
		return "", &Error{Kind: KindBadBinary, Index: -1, Err: err, Msg: fmt.Sprintf("%s %s; build one that can with `GOOS=%s GOARCH=%s CGO_ENABLED=0 go build` and run that, or pass it with burla.Binary", path, msg, nodePlatform.os, nodePlatform.arch)}
	}
	if _, err := os.Stat(path); err != nil {
		return "", &Error{Kind: KindBadBinary, Index: -1, Msg: "read executable", Err: err}
	}
	ef, err := elf.Open(path)
	if err != nil {
		what, known := notELF(path)
		if known {
			err = nil // the ELF reader's complaint adds nothing
		}
		return bad(what+"; cluster nodes run "+nodePlatform.String(), err)
	}
	machine, abi, typ := ef.Machine, ef.OSABI, ef.Type
	ef.Close()
	switch {
	case typ != elf.ET_EXEC && typ != elf.ET_DYN:
		return bad(fmt.Sprintf("is not an executable but an ELF file of type %v", typ), nil)
	case abi != elf.ELFOSABI_NONE && abi != elf.ELFOSABI_LINUX:
		// Linux would start it, and it would fail on its first system call.
		return bad(fmt.Sprintf("is built for %s, not linux; cluster nodes run %s", osName(abi), nodePlatform), nil)
	case archName(machine) != nodePlatform.arch:
		return bad(fmt.Sprintf("is built for linux/%s; cluster nodes run %s", archName(machine), nodePlatform), nil)
	}
	// The digest of what the nodes run: the executable without its debug
	// information, which ship.Strip zeroes.
	_, digest, err := ship.Digest(path)
	if err != nil {
		return "", &Error{Kind: KindBadBinary, Index: -1, Msg: "read executable " + path, Err: err}
	}
	return digest, nil
}

// notELF says what a file that is not ELF is, from its first bytes, and whether
// it recognised it.
func notELF(path string) (string, bool) {
	var head [4]byte
	f, err := os.Open(path)
	if err == nil {
		_, err = io.ReadFull(f, head[:])
		f.Close()
	}
	switch {
	case err != nil:
	case string(head[:2]) == "MZ":
		return "is a Windows executable, not a linux one", true
	case slices.Contains([]uint32{0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, 0xcafebabe}, binary.BigEndian.Uint32(head[:])):
		return "is a macOS executable, not a linux one", true
	case string(head[:2]) == "#!":
		return "is a script, not a linux executable", true
	}
	return fmt.Sprintf("is not a linux executable (this program is %s/%s)", runtime.GOOS, runtime.GOARCH), false
}

// archName is the GOARCH of an ELF machine.
func archName(m elf.Machine) string {
	switch m {
	case elf.EM_386:
		return "386"
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_PPC64:
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_MIPS:
		return "mips"
	case elf.EM_LOONGARCH:
		return "loong64"
	}
	return m.String()
}

// osName is the GOOS of an ELF OS ABI other than linux's.
func osName(abi elf.OSABI) string {
	switch abi {
	case elf.ELFOSABI_FREEBSD:
		return "freebsd"
	case elf.ELFOSABI_NETBSD:
		return "netbsd"
	case elf.ELFOSABI_OPENBSD:
		return "openbsd"
	case elf.ELFOSABI_SOLARIS:
		return "solaris"
	}
	return abi.String()
}

// upload puts the executable in the blob store unless it is there already.
func (c *Cluster) upload(ctx context.Context, path, digest string) error {
	for {
		c.mu.Lock()
		if c.uploaded[digest] {
			c.mu.Unlock()
			return nil
		}
		if busy, ok := c.uploading[digest]; ok {
			c.mu.Unlock()
			select {
			case <-busy: // done, or failed: look again
				continue
			case <-ctx.Done():
				return fmt.Errorf("burla: upload executable %s: %w", path, ctx.Err())
			}
		}
		done := make(chan struct{})
		c.uploading[digest] = done
		c.mu.Unlock()
		err := c.put(ctx, path, digest)
		c.mu.Lock()
		delete(c.uploading, digest)
		if err == nil {
			c.uploaded[digest] = true
		}
		c.mu.Unlock()
		close(done)
		return err
	}
}

// put ships the program at path under its digest, unless the store has it: in
// chunks, sending only those that the last versions this user shipped lack, and
// those as deltas where that is smaller (package ship).
func (c *Cluster) put(ctx context.Context, path, digest string) error {
	s := ship.Sender{Blobs: c.st, Tenant: c.tenant, Dir: shippedDir()}
	if ok, err := s.Shipped(ctx, digest); err != nil {
		return fmt.Errorf("burla: look up executable %s: %w", digest[:12], err)
	} else if ok {
		return nil
	}
	program, d, err := ship.Digest(path)
	if err != nil {
		return fmt.Errorf("burla: upload executable: %w", err)
	}
	if d != digest {
		return &Error{Kind: KindBadBinary, Index: -1, Msg: fmt.Sprintf("%s changed while this program ran; run it again", path)}
	}
	sent, err := s.Send(ctx, program, digest)
	if err != nil {
		return fmt.Errorf("burla: upload executable %s: %w", path, err)
	}
	if l := c.cfg.Logger; l != nil && !sent.Found {
		l.Debug("burla: program shipped", "program", digest[:12], "bytes", sent.Bytes, "of", len(program),
			"chunks", sent.Chunks, "new", sent.New, "deltas", sent.Deltas)
	}
	return nil
}

// shippedDir keeps the last programs this user shipped, for the next to send
// only their changes; "" when the user has no cache directory.
func shippedDir() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "burla", "shipped")
}

// env returns what the program with the given digest can run and, when the job
// names an image, the image with the container worker layered in, from the
// environment's build: the EnvBuildWorkflow for the environment, started by the
// first job that needs it and shared with every other. A program's build is kept;
// an image's is redone by each new client process, since an image can change under
// its name (Docker's cache makes that cheap).
func (c *Cluster) env(ctx context.Context, digest, image string) (control.EnvInfo, error) {
	key := digest + "\x00" + image
	c.mu.Lock()
	info, ok := c.envs[key]
	c.mu.Unlock()
	if ok {
		return info, nil
	}
	run, err := control.NewClient(c.tc).BuildEnv(ctx, control.EnvBuildInput{Binary: digest, Image: image, Tenant: c.tenant})
	if err != nil {
		if e := unauthorized(err); e != nil {
			return info, e
		}
		return info, fmt.Errorf("burla: %w", err)
	}
	if err := run.Get(ctx, &info); err != nil {
		return info, jobError("", err)
	}
	c.mu.Lock()
	c.envs[key] = info
	c.mu.Unlock()
	return info, nil
}
