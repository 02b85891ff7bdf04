package natsstore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/store"
)

var (
	_ store.Backend = (*Tenants)(nil)
	_ store.Uploads = (*Tenants)(nil)
)

// Tenants is the store as the cluster's own components see it on a NATS server
// that keeps each tenant in an account of its own (natsserver.Authenticator): a
// job's records and blobs are in its tenant's account (job.TenantOf, job.BlobTenant),
// reached on a connection of their own, made on first use with the component's
// key and the tenant as user name; node records are in the global account.
type Tenants struct {
	url, name, key string
	global         *Store

	mu sync.Mutex
	by map[string]*Store
}

// ConnectTenants connects a component holding a key of a system role.
func ConnectTenants(ctx context.Context, url, name, key string) (*Tenants, error) {
	g, err := Connect(ctx, url, name, nats.Token(key))
	if err != nil {
		return nil, err
	}
	return &Tenants{url: url, name: name, key: key, global: g, by: map[string]*Store{}}, nil
}

// For returns the store of tenant's account.
func (t *Tenants) For(ctx context.Context, tenant string) (*Store, error) {
	if !job.ValidTenant(tenant) {
		return nil, fmt.Errorf("invalid tenant %q", tenant)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.by[tenant]; ok {
		return s, nil
	}
	s, err := Connect(ctx, t.url, t.name+"@"+tenant, nats.UserInfo(tenant, t.key))
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	t.by[tenant] = s
	return s, nil
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
	return s.CreateJob(ctx, spec)
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
	return s.PutChunks(ctx, jobID, cs)
}

func (t *Tenants) Seal(ctx context.Context, jobID string, chunks int) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.Seal(ctx, jobID, chunks)
}

func (t *Tenants) Claim(ctx context.Context, jobID string, wait time.Duration) (store.Claim, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return s.Claim(ctx, jobID, wait)
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
	return s.DeleteInputs(ctx, jobID)
}

func (t *Tenants) PutResults(ctx context.Context, jobID string, rs []store.Result) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.PutResults(ctx, jobID, rs)
}

func (t *Tenants) WatchResults(ctx context.Context, jobID string, fn func([]store.Result)) (store.Watch, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return s.WatchResults(ctx, jobID, fn)
}

func (t *Tenants) PutLogs(ctx context.Context, jobID string, lines []store.LogLine) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.PutLogs(ctx, jobID, lines)
}

func (t *Tenants) WatchLogs(ctx context.Context, jobID string, fn func([]store.LogLine)) (store.Watch, error) {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return nil, err
	}
	return s.WatchLogs(ctx, jobID, fn)
}

func (t *Tenants) Heartbeat(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.Heartbeat(ctx, jobID)
}

func (t *Tenants) Release(ctx context.Context, jobID string) error {
	s, err := t.job(ctx, jobID)
	if err != nil {
		return err
	}
	return s.Release(ctx, jobID)
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
	return s.PutUpload(ctx, jobID, u)
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

func (t *Tenants) Put(ctx context.Context, key string, r io.Reader) error {
	s, err := t.blob(ctx, key)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, r)
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
func (t *Tenants) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	s, err := t.blob(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

func (t *Tenants) Delete(ctx context.Context, key string) error {
	s, err := t.blob(ctx, key)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

var _ blob.Store = (*Tenants)(nil)
