package natsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

var (
	_ store.Backend = (*Tenants)(nil)
	_ store.Grants  = (*Tenants)(nil)
	_ store.Uploads = (*Tenants)(nil)
	_ store.Records = (*Tenants)(nil)
)

// bucketTenants, in the global account, names every tenant whose account a
// system component has used (one key each), so that the collector can list
// every tenant's blobs and jobs: no account can list the others.
const bucketTenants = "burla-tenants"

// Tenants is the store as the cluster's own components see it on a NATS server
// that keeps each tenant in an account of its own (natsserver.Authenticator): a
// job's records and blobs are in its tenant's account (job.TenantOf, job.BlobTenant),
// reached on a connection of their own, made on first use with the component's
// key and the tenant as user name; node records are in the global account.
type Tenants struct {
	url, name, key string
	opts           []nats.Option // the connection's besides the key: TLS
	global         *Store
	tenants        jetstream.KeyValue // bucketTenants

	mu sync.Mutex
	by map[string]*Store
	// listed holds the tenants this process has recorded in bucketTenants, and
	// retry when it may try again to record one it could not.
	listed map[string]bool
	retry  map[string]time.Time
}

// ConnectTenants connects a component holding a key of a system role. opts add
// to every connection's options, each tenant's too: TLS (nats.Secure).
func ConnectTenants(ctx context.Context, url, name, key string, opts ...nats.Option) (*Tenants, error) {
	g, err := Connect(ctx, url, name, append(slices.Clip(opts), nats.Token(key))...)
	if err != nil {
		return nil, err
	}
	kv, err := g.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketTenants, Storage: jetstream.FileStorage})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("create bucket %s: %w", bucketTenants, err)
	}
	return &Tenants{url: url, name: name, key: key, opts: opts, global: g, tenants: kv,
		by: map[string]*Store{}, listed: map[string]bool{}, retry: map[string]time.Time{}}, nil
}

// For returns the store of tenant's account.
func (t *Tenants) For(ctx context.Context, tenant string) (*Store, error) {
	if !job.ValidTenant(tenant) {
		return nil, fmt.Errorf("invalid tenant %q", tenant)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.listed[tenant] && !time.Now().Before(t.retry[tenant]) {
		// Recorded before the account is used, so the collector sees whatever
		// the account comes to hold. It is not worth holding up the store's
		// work for: a failure is tried again a while later.
		if err := t.record(ctx, tenant); err != nil {
			slog.Warn("NATS store: could not record a tenant for the collector", "tenant", tenant, "error", err)
			t.retry[tenant] = time.Now().Add(recordRetry)
		} else {
			t.listed[tenant] = true
		}
	}
	if s, ok := t.by[tenant]; ok {
		return s, nil
	}
	s, err := Connect(ctx, t.url, t.name+"@"+tenant, append(slices.Clip(t.opts), nats.UserInfo(tenant, t.key))...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	t.by[tenant] = s
	return s, nil
}

// recordRetry is how long after a failed record of a tenant For tries again.
const recordRetry = time.Minute

// record writes tenant into bucketTenants within a few seconds, making the
// bucket again if the server lost it (a restart without its data).
func (t *Tenants) record(ctx context.Context, tenant string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := t.tenants.Put(ctx, tenant, nil)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		if _, err = t.global.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucketTenants, Storage: jetstream.FileStorage}); err == nil {
			_, err = t.tenants.Put(ctx, tenant, nil)
		}
	}
	return err
}

// Tenants returns every tenant whose account a system component has used.
func (t *Tenants) Tenants(ctx context.Context) ([]string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	l, err := t.tenants.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer l.Stop()
	var out []string
	for k := range l.Keys() {
		if job.ValidTenant(k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// eachTenant calls fn with the store of every tenant Tenants returns.
func (t *Tenants) eachTenant(ctx context.Context, fn func(tenant string, s *Store) error) error {
	names, err := t.Tenants(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		s, err := t.For(ctx, name)
		if err == nil {
			err = fn(name, s)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// ListJobs implements store.Records over every tenant's account.
func (t *Tenants) ListJobs(ctx context.Context) ([]store.JobRecord, error) {
	var out []store.JobRecord
	err := t.eachTenant(ctx, func(_ string, s *Store) error {
		rs, err := s.ListJobs(ctx)
		out = append(out, rs...)
		return err
	})
	return out, err
}

// DeleteJob implements store.Records.
func (t *Tenants) DeleteJob(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.DeleteJob(ctx, jobID)
}

// ErrTenantLimit marks a request the server refused because the tenant's
// account is at one of its limits (natsserver.TenantLimits): its store is full,
// or it has as many streams or consumers as it may. Other tenants are not.
var ErrTenantLimit = errors.New("the tenant is at a limit of its store")

// JetStream's codes for the account limits.
const (
	codeAccountResourcesExceeded jetstream.ErrorCode = 10002 // a write would take the account past its bytes
	codeStorageResourcesExceeded jetstream.ErrorCode = 10047 // a stream's reservation would
	codeMemoryResourcesExceeded  jetstream.ErrorCode = 10028 // a stream in memory, which a bounded tenant may not have
	codeMaximumStreamsLimit      jetstream.ErrorCode = 10027
)

// limited returns err, the outcome of a request in tenant's account, saying
// which of the account's limits refused it and matching ErrTenantLimit, when one
// did: the server's own words name no tenant and no way out.
func limited(tenant string, err error) error {
	var api *jetstream.APIError
	if err == nil || !errors.As(err, &api) {
		return err
	}
	switch api.ErrorCode {
	case codeAccountResourcesExceeded, codeStorageResourcesExceeded, codeMemoryResourcesExceeded:
		return fmt.Errorf("tenant %s's store is full: it holds all its account may (the cluster's --tenant-max-store-mb); "+
			"it frees as the collector deletes its ended jobs' data (the cluster's --retention after each ends), or as its shared files are deleted: %w: %w", tenant, ErrTenantLimit, err)
	case codeMaximumStreamsLimit:
		return fmt.Errorf("tenant %s has as many streams as its account may (the cluster's --tenant-max-streams): %w: %w", tenant, ErrTenantLimit, err)
	case jetstream.JSErrCodeMaximumConsumersLimit:
		return fmt.Errorf("tenant %s has as many consumers as its account may (the cluster's --tenant-max-consumers), one for each job's inputs and each watch of results or logs: "+
			"it frees as its jobs end: %w: %w", tenant, ErrTenantLimit, err)
	}
	return err
}

func (t *Tenants) job(ctx context.Context, jobID string) (*Store, error) {
	if !job.ValidID(jobID) {
		return nil, fmt.Errorf("invalid job ID %q", jobID)
	}
	return t.For(ctx, job.TenantOf(jobID))
}

func (t *Tenants) blob(ctx context.Context, key string) (*Store, error) {
	if tenant := job.BlobTenant(key); tenant != "" {
		return t.For(ctx, tenant)
	}
	return t.global, nil
}

// Close closes every connection.
func (t *Tenants) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.by {
		s.Close()
	}
	t.global.Close()
}

func (t *Tenants) CreateJob(ctx context.Context, spec job.Spec) error {
	s, err := t.job(ctx, spec.ID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(spec.ID), s.CreateJob(ctx, spec))
}

func (t *Tenants) Job(ctx context.Context, jobID string) (job.Spec, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return job.Spec{}, err
	}
	return s.Job(ctx, jobID)
}

func (t *Tenants) PutChunks(ctx context.Context, jobID string, cs []store.Chunk) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.PutChunks(ctx, jobID, cs))
}

func (t *Tenants) Seal(ctx context.Context, jobID string, chunks int) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.Seal(ctx, jobID, chunks))
}

func (t *Tenants) Claim(ctx context.Context, jobID string, wait time.Duration) (store.Claim, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	v, err := s.Claim(ctx, jobID, wait)
	return v, limited(job.TenantOf(jobID), err)
}

func (t *Tenants) Progress(ctx context.Context, jobID string) (store.Progress, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return store.Progress{}, err
	}
	return s.Progress(ctx, jobID)
}

func (t *Tenants) DeleteInputs(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.DeleteInputs(ctx, jobID))
}

func (t *Tenants) PutResults(ctx context.Context, jobID string, rs []store.Result) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.PutResults(ctx, jobID, rs))
}

func (t *Tenants) WatchResults(ctx context.Context, jobID string, fn func([]store.Result)) (store.Watch, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	v, err := s.WatchResults(ctx, jobID, fn)
	return v, limited(job.TenantOf(jobID), err)
}

func (t *Tenants) PutLogs(ctx context.Context, jobID string, lines []store.LogLine) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.PutLogs(ctx, jobID, lines))
}

func (t *Tenants) WatchLogs(ctx context.Context, jobID string, fn func([]store.LogLine)) (store.Watch, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	v, err := s.WatchLogs(ctx, jobID, fn)
	return v, limited(job.TenantOf(jobID), err)
}

func (t *Tenants) Heartbeat(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.Heartbeat(ctx, jobID))
}

func (t *Tenants) Release(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.Release(ctx, jobID))
}

func (t *Tenants) LastHeartbeat(ctx context.Context, jobID string) (time.Time, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return time.Time{}, err
	}
	return s.LastHeartbeat(ctx, jobID)
}

func (t *Tenants) PutUpload(ctx context.Context, jobID string, u store.Upload) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return limited(job.TenantOf(jobID), s.PutUpload(ctx, jobID, u))
}

func (t *Tenants) Upload(ctx context.Context, jobID string) (store.Upload, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return store.Upload{}, err
	}
	return s.Upload(ctx, jobID)
}

func (t *Tenants) PutNode(ctx context.Context, n store.Node) error { return t.global.PutNode(ctx, n) }
func (t *Tenants) ListNodes(ctx context.Context) ([]store.Node, error) {
	return t.global.ListNodes(ctx)
}
func (t *Tenants) GetNode(ctx context.Context, id string) (store.Node, error) {
	return t.global.GetNode(ctx, id)
}
func (t *Tenants) DeleteNode(ctx context.Context, id string) error {
	return t.global.DeleteNode(ctx, id)
}

// PutGrant implements store.Grants in the global account, which no tenant reaches.
func (t *Tenants) PutGrant(ctx context.Context, nodeID string, g store.Grant) error {
	return t.global.PutGrant(ctx, nodeID, g)
}

// WatchGrants implements store.Grants in the global account.
func (t *Tenants) WatchGrants(ctx context.Context, nodeID string, fn func(store.Grant)) (func(), error) {
	return t.global.WatchGrants(ctx, nodeID, fn)
}

func (t *Tenants) Put(ctx context.Context, key string, r io.Reader) error {
	s, err := t.blob(ctx, key)
	if err != nil {
		return err
	}
	return limited(job.BlobTenant(key), s.Put(ctx, key, r))
}

func (t *Tenants) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	s, err := t.blob(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, key)
}

func (t *Tenants) Has(ctx context.Context, key string) (bool, error) {
	s, err := t.blob(ctx, key)
	if err != nil {
		return false, err
	}
	return s.Has(ctx, key)
}

// List implements blob.Store in the account of the tenant prefix names (see
// job.BlobTenant), or the global one for a prefix that names none.
// List lists the blobs whose keys begin with prefix. A prefix that names no
// tenant ("", say) lists the global account's blobs and every tenant's.
func (t *Tenants) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	if job.BlobTenant(prefix) == "" {
		out, err := t.global.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		err = t.eachTenant(ctx, func(tenant string, s *Store) error {
			v, err := s.List(ctx, prefix)
			out = append(out, v...)
			return limited(tenant, err)
		})
		return out, err
	}
	s, err := t.blob(ctx, prefix)
	if err != nil {
		return nil, err
	}
	v, err := s.List(ctx, prefix)
	return v, limited(job.BlobTenant(prefix), err)
}

func (t *Tenants) Delete(ctx context.Context, key string) error {
	s, err := t.blob(ctx, key)
	if err != nil {
		return err
	}
	return limited(job.BlobTenant(key), s.Delete(ctx, key))
}

var _ blob.Store = (*Tenants)(nil)
