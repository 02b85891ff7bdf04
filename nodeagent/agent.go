package nodeagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/burla-temporal/burla/activities"
	"github.com/burla-temporal/burla/activities/activitymetrics"
	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/runtime"
	"github.com/burla-temporal/burla/runtime/process"
	"github.com/burla-temporal/burla/ship"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/temporalmetrics"
	"github.com/burla-temporal/burla/workers"
)

// Config configures a node agent.
type Config struct {
	ID string
	// Cluster is the cluster the node belongs to.
	Cluster         string
	CPUs            int
	RAMMB           int
	TemporalAddress string
	Namespace       string
	StoreURL        string // see package storeurl
	// TemporalSecurity secures the connection to Temporal (package temporalconn).
	TemporalSecurity temporalconn.Security
	// CacheDir holds the node's fetched binaries (in bin/, mode 0700) and its workers'
	// own directories (in workers/, see runtime.WorkerSpec.Dir; the process runtime
	// may keep them elsewhere, see process.WorkersDir). No worker sees the cache:
	// each is given its job's program alone (runtime.Worker.Provide).
	CacheDir string
	// CacheMaxBytes bounds the programs kept in the cache: past it, those used
	// least recently are deleted (a running program is not disturbed; it is
	// fetched again when a job next needs it). Zero means DefaultCacheMaxBytes.
	CacheMaxBytes int64
	// MinFreeDisk is the free space, in bytes, below which the node's disk counts
	// as full: the agent then reports a fault and the cluster replaces the node.
	// Zero means DefaultMinFreeDisk.
	MinFreeDisk int64
	// WorkerArgv starts one container worker; the agent adds "--slot N".
	WorkerArgv []string
	// WorkerTokens, if set, gives the access tokens the workers reach a cloud
	// store with, which the agent hands them (wire.OpToken): the one it has as
	// each starts, and every TokenEvery the one WorkerTokens gives then, which is
	// to be a new one well before the last expires. Their argv is to tell them to
	// take them (burla container-worker --agent-tokens).
	WorkerTokens func(ctx context.Context) (token string, expiry time.Time, err error)
	// Runtime runs the workers; nil means processes.
	Runtime runtime.Runtime
	// Envs are users' images whose workers the node keeps warm besides its
	// default's, one per CPU each; EnvImage layers the container worker onto one.
	Envs     []string
	EnvImage func(ctx context.Context, base string) (string, error)
	Logger   *slog.Logger
	// Metrics, if set, receives the node's Prometheus metrics, which are served at
	// MetricsURL (recorded in the node's record).
	Metrics    prometheus.Registerer
	MetricsURL string
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger.With("node", cfg.ID)
	if cfg.CPUs < 1 {
		return fmt.Errorf("node %s: %d CPUs", cfg.ID, cfg.CPUs)
	}
	// Workers' directories are bind-mounted into containers: their paths are absolute.
	if abs, err := filepath.Abs(cfg.CacheDir); err == nil {
		cfg.CacheDir = abs
	}
	binDir, workersDir := filepath.Join(cfg.CacheDir, "bin"), filepath.Join(cfg.CacheDir, "workers")
	// Tenants' programs are the agent's alone (a cache made by an older agent was
	// readable by all).
	for _, dir := range []string{binDir, workersDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("node %s: cache: %w", cfg.ID, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("node %s: cache: %w", cfg.ID, err)
		}
	}
	st, err := storeurl.Open(ctx, cfg.StoreURL, "burla-node-"+cfg.ID)
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	defer st.Close()
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	topts := client.Options{
		HostPort:       cfg.TemporalAddress,
		Namespace:      cfg.Namespace,
		Logger:         tlog.NewStructuredLogger(log.With("component", "temporal")),
		MetricsHandler: temporalmetrics.New(reg),
	}
	tc, err := cfg.TemporalSecurity.Dial(ctx, topts)
	if err != nil {
		return fmt.Errorf("node %s: connect to Temporal at %s: %w", cfg.ID, cfg.TemporalAddress, err)
	}
	defer tc.Close()

	cache := &binCache{dir: binDir, blobs: st, max: cmp.Or(cfg.CacheMaxBytes, DefaultCacheMaxBytes), log: log}
	rt := cfg.Runtime
	if rt == nil {
		rt = process.Runtime{}
	}
	if _, ok := rt.(process.Runtime); ok {
		if process.Isolates() {
			// Its workers run as a user of their own, which must reach their directories.
			own := workersDir
			if workersDir, err = process.WorkersDir(workersDir); err != nil {
				return fmt.Errorf("node %s: %w", cfg.ID, err)
			}
			if workersDir != own {
				// A directory outside the cache (in the system's temporary
				// directory) goes with the agent; the cache is its provider's.
				defer os.RemoveAll(workersDir)
			}
		} else {
			log.Warn("the process runtime runs tenants' code as this agent's own user, which only an agent that is root could change: " +
				"a job can read whatever this user can, the node's program cache and other jobs' files included; " +
				"run the agent as root, or on the docker runtime, to keep tenants apart")
		}
	}
	// Workers an earlier agent of this node left behind (a crash) are removed.
	if err := rt.Cleanup(ctx, cfg.Cluster, cfg.ID); err != nil {
		return fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	// And so are their directories, with whatever their last jobs wrote there.
	if err := clearDir(workersDir); err != nil {
		return fmt.Errorf("node %s: remove old workers' directories: %w", cfg.ID, err)
	}
	memPerWorker := 0
	if cfg.RAMMB > 0 {
		memPerWorker = cfg.RAMMB / cfg.CPUs
	}
	var envs []string
	for _, base := range cfg.Envs {
		if cfg.EnvImage == nil {
			return fmt.Errorf("node %s: environment %s needs a runtime that runs images", cfg.ID, base)
		}
		tag, err := cfg.EnvImage(ctx, base)
		if err != nil {
			return fmt.Errorf("node %s: environment %s: %w", cfg.ID, base, err)
		}
		envs = append(envs, tag)
	}
	// Workers reach the store with the node's key, if the cluster asks for one
	// (storeurl.Open reads it from the environment, as the agent's store did).
	var workerEnv []string
	if key := os.Getenv(auth.EnvKey); key != "" {
		workerEnv = []string{auth.EnvKey + "=" + key}
	}
	p := newPool(rt, runtime.WorkerSpec{Cluster: cfg.Cluster, Node: cfg.ID, CPUs: 1, MemoryMB: memPerWorker, Dir: workersDir, Env: workerEnv},
		cfg.WorkerArgv, cfg.CPUs, envs, log, cache.get)
	reg.MustRegister(p.restarts, p.resets, p.lowered,
		prometheus.NewGaugeFunc(
			prometheus.GaugeOpts{Name: "burla_node_workers_warm", Help: "Container workers running and ready."},
			func() float64 { _, warm, _ := p.state(); return float64(warm) }),
		prometheus.NewGaugeFunc(
			prometheus.GaugeOpts{Name: "burla_node_workers_busy", Help: "Container workers running a job's calls."},
			func() float64 { _, _, busy := p.state(); return float64(busy) }))
	p.work.register(reg)
	disk := newDiskCheck(cmp.Or(cfg.MinFreeDisk, DefaultMinFreeDisk), cfg.CacheDir, workersDir)
	reg.MustRegister(prometheus.NewGaugeFunc(
		prometheus.GaugeOpts{Name: "burla_node_disk_free_bytes", Help: "Free space of the fullest file system the node's cache and workers use."},
		func() float64 { free, _, _ := disk.free(); return float64(free) }))
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	supervised := make(chan struct{})
	go func() { p.supervise(poolCtx); close(supervised) }()
	if cfg.WorkerTokens != nil {
		fed := make(chan struct{})
		go func() { p.feedTokens(poolCtx, cfg.WorkerTokens, TokenEvery); close(fed) }()
		defer func() { stopPool(); <-fed }()
	}
	defer func() {
		stopPool()
		p.close()
		<-supervised
	}()

	w := workers.Node(tc, cfg.ID, &activities.Node{Runner: p, Queue: st, Metrics: activitymetrics.Node(reg)})
	if err := w.Start(); err != nil {
		return fmt.Errorf("node %s: start Temporal worker: %w", cfg.ID, err)
	}
	defer w.Stop()
	// The cluster's grants reach the node through the store too, so that its
	// workers start on a job before the job's activity on it arrives.
	if g, ok := st.(store.Grants); ok {
		stop, err := g.WatchGrants(ctx, cfg.ID, func(gr store.Grant) { go p.Begin(poolCtx, gr) })
		if err != nil {
			log.Warn("could not watch the node's grants: jobs start here when their activities come", "error", err)
		} else {
			defer stop()
		}
	}

	log.Info("node agent started", "cpus", cfg.CPUs, "task_queue", control.NodeTaskQueue(cfg.ID))
	fault := ""
	register := func() {
		jobID, warm, busy := p.state()
		if f := disk.fault(); f != fault {
			if fault = f; f != "" {
				log.Error("the node cannot go on; it asks the cluster to replace it", "fault", f)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := st.PutNode(rctx, store.Node{ID: cfg.ID, CPUs: cfg.CPUs, RAMMB: cfg.RAMMB,
			TaskQueue: control.NodeTaskQueue(cfg.ID), Job: jobID, Warm: warm, Busy: busy, Metrics: cfg.MetricsURL,
			Fault: fault, Updated: time.Now()})
		if err != nil && ctx.Err() == nil {
			log.Warn("could not register node", "error", err)
		}
	}
	// The node is ready once its workers are warm.
	for warmed := time.Now(); ; {
		if _, warm, _ := p.state(); warm == p.size() || time.Since(warmed) > 30*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	register()
	// Tell the node's workflow the agent is up. A node started by hand has none.
	if err := tc.SignalWorkflow(ctx, control.NodeWorkflowID(cfg.ID), "", control.SignalRegistered, nil); err != nil {
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			return fmt.Errorf("node %s: register with its workflow: %w", cfg.ID, err)
		}
		log.Info("node has no NodeWorkflow; running unmanaged")
	}
	t := time.NewTicker(store.NodeTTL / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = st.DeleteNode(dctx, cfg.ID)
			cancel()
			return nil
		case <-t.C:
			register()
		case <-p.changed:
			register()
		}
	}
}

// clearDir removes everything in dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		d := runtime.WorkerDir{Path: filepath.Join(dir, e.Name())}
		if err := d.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DefaultCacheMaxBytes is the bound of a node's program cache unless its
// configuration says otherwise: 4 GiB.
const DefaultCacheMaxBytes = 4 << 30

// binCache keeps the programs jobs ship, by digest, fetched once per node from
// the blob store of the job's tenant, up to max bytes: those used least recently
// go first.
type binCache struct {
	dir   string
	blobs blob.Store
	max   int64
	log   *slog.Logger
	mu    sync.Mutex
}

// evict deletes the programs used least recently (by modification time, which
// get sets on every use; a fetched file's is its fetch) until the cache holds at most max bytes, keeping keep.
func (c *binCache) evict(keep string) {
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	// The programs, and the packs of chunks they were made from (ship.Fetch).
	filepath.WalkDir(c.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			files = append(files, file{path, fi.Size(), fi.ModTime()})
			total += fi.Size()
		}
		return nil
	})
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= c.max {
			return
		}
		if f.path == keep {
			continue
		}
		if err := os.Remove(f.path); err == nil {
			total -= f.size
			if c.log != nil {
				c.log.Info("program evicted from the node's cache", "program", filepath.Base(f.path), "bytes", f.size)
			}
		}
	}
}

func (c *binCache) get(ctx context.Context, tenant, digest string) (string, error) {
	if !job.ValidDigest(digest) {
		return "", control.ErrBadBinary.New(fmt.Sprintf("bad binary digest %q", digest), nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A cached program is marked used now, the last to be evicted, in the one
	// system call that finds it there: the cache grows only on a fetch, so only
	// a fetch evicts.
	now := time.Now()
	if cached := filepath.Join(c.dir, digest); os.Chtimes(cached, now, now) == nil {
		return cached, nil
	}
	start := now
	path, err := ship.Fetch(ctx, c.blobs, tenant, digest, c.dir)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return "", control.ErrBadBinary.New(fmt.Sprintf("binary %s is not in the blob store", digest[:12]), err)
	case errors.Is(err, blob.ErrDigestMismatch), errors.Is(err, ship.ErrBadManifest):
		return "", control.ErrBadBinary.New(err.Error(), err)
	case err != nil:
		return "", fmt.Errorf("fetch binary %s: %w", digest[:12], err)
	}
	c.evict(path)
	// A long download is reported; a cached program is not, since an activity's
	// first heartbeat is a round trip to Temporal on the job's path.
	if actx := ctx; activity.IsActivity(actx) && time.Since(start) > time.Second {
		activity.RecordHeartbeat(actx)
	}
	return path, nil
}
