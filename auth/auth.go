// Package auth says who may do what on a cluster. A cluster that asks for API
// keys (`burla dev --keys FILE`, `burla temporal-server --keys FILE`, `burla
// nats-server --keys FILE`) admits a caller by the key it presents; the key stands
// for a principal: a tenant, whose programs start jobs and may see only their own,
// or one of the cluster's own components.
//
// A key reads "bk_<role>_<tenant>_<secret>" so that a program knows its tenant
// without asking, but the servers trust only the keys file, which holds each key's
// SHA-256 and what it stands for, never the key itself.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/burla-temporal/burla/job"
)

// EnvKey is the environment variable every component reads its key from.
const EnvKey = "BURLA_API_KEY"

// Role is what a principal is.
type Role string

const (
	// RoleTenant starts jobs and sees only its own.
	RoleTenant Role = "tenant"
	// RoleAdmin operates the cluster: it sees every tenant's jobs and changes the
	// cluster's standby.
	RoleAdmin Role = "admin"
	// RoleControl is the control plane's worker.
	RoleControl Role = "control"
	// RoleNode is a node agent and the container workers it starts.
	RoleNode Role = "node"
)

// System reports whether r is one of the cluster's own components or an
// operator, which see every tenant's data.
func (r Role) System() bool { return r == RoleAdmin || r == RoleControl || r == RoleNode }

func (r Role) valid() bool { return r == RoleTenant || r.System() }

// Principal is who a key stands for.
type Principal struct {
	Role   Role
	Tenant string // the tenant, for RoleTenant
	ID     string // the key's ID: the first 12 hex digits of its SHA-256, for logs
}

// systemName is the tenant part of a system role's key.
const systemName = "cluster"

// keyPrefix starts every key, so that a key in a log or a paste is recognisable.
const keyPrefix = "bk_"

var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewKey returns a fresh key for role and tenant (ignored for system roles).
func NewKey(role Role, tenant string) (string, error) {
	if !role.valid() {
		return "", fmt.Errorf("unknown role %q (tenant, admin, control or node)", role)
	}
	if role.System() {
		tenant = systemName
	} else if !job.ValidTenant(tenant) {
		return "", fmt.Errorf("invalid tenant name %q: 1 to 32 lower-case letters, digits and dashes, starting with a letter", tenant)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new key: %w", err)
	}
	return keyPrefix + string(role) + "_" + tenant + "_" + secretEncoding.EncodeToString(b[:]), nil
}

// MaxKeyBytes bounds a key; anything longer is refused before it is hashed.
const MaxKeyBytes = 128

// ParseKey reads the role and tenant a key claims. The claim is checked against
// the keys file by Keys.Lookup; a client uses it to name its jobs.
func ParseKey(key string) (Principal, error) {
	if len(key) > MaxKeyBytes {
		return Principal{}, fmt.Errorf("API key is %d bytes, more than %d", len(key), MaxKeyBytes)
	}
	return parseKey(key, hash(key))
}

// parseKey is ParseKey for a key of at most MaxKeyBytes whose SHA-256 (hex) is h.
func parseKey(key, h string) (Principal, error) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	parts := strings.Split(rest, "_")
	if !ok || len(parts) != 3 || len(parts[2]) != 52 {
		return Principal{}, errors.New(`API key is not of the form "bk_<role>_<tenant>_<secret>"; make one with "burla keys add"`)
	}
	p := Principal{Role: Role(parts[0]), Tenant: parts[1], ID: h[:12]}
	switch {
	case !p.Role.valid():
		return Principal{}, fmt.Errorf("API key %s names unknown role %q", p.ID, p.Role)
	case p.Role.System():
		if p.Tenant != systemName {
			return Principal{}, fmt.Errorf("API key %s of role %s names tenant %q", p.ID, p.Role, p.Tenant)
		}
		p.Tenant = ""
	case !job.ValidTenant(p.Tenant):
		return Principal{}, fmt.Errorf("API key %s names invalid tenant %q", p.ID, p.Tenant)
	}
	return p, nil
}

// KeyID is the short public name of a key: 12 hex digits of its SHA-256.
func KeyID(key string) string { return hash(key)[:12] }

// Hash is a key's SHA-256 in hex, as the keys file holds it. A server keeps it,
// not the key, to ask Keys.Admits later whether the key has been revoked.
func Hash(key string) string { return hash(key) }

func hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Entry is one key in the keys file.
type Entry struct {
	SHA256  string    `json:"sha256"`
	Role    Role      `json:"role"`
	Tenant  string    `json:"tenant,omitempty"`
	Created time.Time `json:"created"`
}

type file struct {
	Keys []Entry `json:"keys"`
}

// ErrUnknownKey is Lookup's error for a key the keys file does not hold.
var ErrUnknownKey = errors.New("API key not recognised")

// Keys is a keys file, read again when it changes, so that a key added or revoked
// with `burla keys` takes effect within a second, without a restart. Keys made with
// AddEphemeral live in memory only. Safe for concurrent use.
type Keys struct {
	path string

	mu        sync.Mutex
	checked   time.Time // when the file was last read
	sum       [sha256.Size]byte
	byHash    map[string]Entry
	ephemeral map[string]Entry
}

// Open reads the keys file at path, which must exist (make it with `burla keys add`).
func Open(path string) (*Keys, error) {
	k := &Keys{path: path, ephemeral: map[string]Entry{}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// NewMemory is a Keys with no file: only ephemeral keys.
func NewMemory() *Keys { return &Keys{byHash: map[string]Entry{}, ephemeral: map[string]Entry{}} }

// AddEphemeral makes a key for role that lives as long as k, for a component a
// cluster starts itself (burla dev's control plane and node agents).
func (k *Keys) AddEphemeral(role Role, tenant string) (string, error) {
	key, err := NewKey(role, tenant)
	if err != nil {
		return "", err
	}
	p, _ := ParseKey(key)
	k.mu.Lock()
	k.ephemeral[hash(key)] = Entry{SHA256: hash(key), Role: role, Tenant: p.Tenant, Created: time.Now().UTC()}
	k.mu.Unlock()
	return key, nil
}

// Lookup returns who key stands for, or an error wrapping ErrUnknownKey.
func (k *Keys) Lookup(key string) (Principal, error) {
	if len(key) > MaxKeyBytes {
		return ParseKey(key) // its error
	}
	h := hash(key) // once: every call to a server that asks for keys comes here
	p, err := parseKey(key, h)
	if err != nil {
		return Principal{}, err
	}
	k.mu.Lock()
	if k.path != "" && time.Since(k.checked) > time.Second {
		// On an error keep the keys read last; a file broken by hand must not lock
		// everyone out.
		_ = k.reloadLocked()
	}
	e, ok := k.entryLocked(h)
	k.mu.Unlock()
	if !ok {
		return Principal{}, fmt.Errorf("%w: key %s", ErrUnknownKey, p.ID)
	}
	if !e.standsFor(p) {
		return Principal{}, fmt.Errorf("%w: key %s claims %s %q but was made for %s %q", ErrUnknownKey, p.ID, p.Role, p.Tenant, e.Role, e.Tenant)
	}
	return p, nil
}

// Admits reports whether the key whose Hash is sum, admitted by Lookup as p, is
// still in k with p's role and tenant: a server asks it of the keys its open
// connections presented, after Refresh, to close those of a key since revoked.
func (k *Keys) Admits(sum string, p Principal) bool {
	k.mu.Lock()
	e, ok := k.entryLocked(sum)
	k.mu.Unlock()
	return ok && e.standsFor(p)
}

// entryLocked is the entry, ephemeral or from the file, of the key whose hash is h.
func (k *Keys) entryLocked(h string) (Entry, bool) {
	e, ok := k.ephemeral[h]
	if !ok {
		e, ok = k.byHash[h]
	}
	// The map lookup is by hash, so timing reveals nothing of the key; the
	// comparison guards against a file whose entry was edited by hand.
	if !ok || subtle.ConstantTimeCompare([]byte(e.SHA256), []byte(h)) != 1 {
		return Entry{}, false
	}
	return e, true
}

// standsFor reports whether e was made for the role and tenant p claims.
func (e Entry) standsFor(p Principal) bool {
	return e.Role == p.Role && (e.Role != RoleTenant || e.Tenant == p.Tenant)
}

// Refresh reads the keys file again now, rather than within the second Lookup
// waits, for a server that watches for revoked keys. On an error k keeps the keys
// read last.
func (k *Keys) Refresh() error {
	if k.path == "" {
		return nil
	}
	return k.reload()
}

func (k *Keys) reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked()
}

// reloadLocked reads the file and, if its contents changed, takes its keys. It
// compares contents, not the file's size and modification time: a revoke then an
// add leave the size as it was, and within one tick of the file system's clock
// (some milliseconds on ext4, two seconds on FAT) the time too, so the revoke
// would go unseen. A keys file is small; reading it once a second costs little.
func (k *Keys) reloadLocked() error {
	k.checked = time.Now()
	data, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	sum := sha256.Sum256(data)
	if k.byHash != nil && sum == k.sum {
		return nil
	}
	f, err := parseFile(k.path, data)
	if err != nil {
		return err
	}
	byHash := make(map[string]Entry, len(f.Keys))
	for _, e := range f.Keys {
		byHash[e.SHA256] = e
	}
	k.byHash, k.sum = byHash, sum
	return nil
}

func readFile(path string) (file, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return file{}, fmt.Errorf("keys file: %w", err)
	}
	return parseFile(path, data)
}

func parseFile(path string, data []byte) (file, error) {
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("keys file %s: %w", path, err)
	}
	for i, e := range f.Keys {
		if len(e.SHA256) != 64 || !e.Role.valid() || (e.Role == RoleTenant && !job.ValidTenant(e.Tenant)) {
			return f, fmt.Errorf("keys file %s: entry %d is not a SHA-256 with a known role and a valid tenant", path, i)
		}
	}
	return f, nil
}

// Add makes a key for role and tenant, records its hash in the keys file at path
// (made, mode 0600, if missing) and returns the key, which is shown only once.
func Add(path string, role Role, tenant string) (string, error) {
	key, err := NewKey(role, tenant)
	if err != nil {
		return "", err
	}
	p, _ := ParseKey(key)
	unlock, err := lock(path)
	if err != nil {
		return "", err
	}
	defer unlock()
	f, err := readFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	f.Keys = append(f.Keys, Entry{SHA256: hash(key), Role: role, Tenant: p.Tenant, Created: time.Now().UTC().Truncate(time.Second)})
	return key, writeFile(path, f)
}

// Revoke removes the keys whose ID (or SHA-256) starts with id from the file and
// returns how many it removed.
func Revoke(path, id string) (int, error) {
	if len(id) < 6 {
		return 0, fmt.Errorf("key ID %q: give at least 6 hex digits", id)
	}
	if _, err := os.Stat(path); err != nil {
		// Before lock, which would make a lock file, and its directory, beside a
		// keys file that is not there.
		return 0, fmt.Errorf("keys file: %w", err)
	}
	unlock, err := lock(path)
	if err != nil {
		return 0, err
	}
	defer unlock()
	f, err := readFile(path)
	if err != nil {
		return 0, err
	}
	kept := f.Keys[:0]
	for _, e := range f.Keys {
		if !strings.HasPrefix(e.SHA256, id) {
			kept = append(kept, e)
		}
	}
	n := len(f.Keys) - len(kept)
	f.Keys = kept
	return n, writeFile(path, f)
}

// List returns the keys file's entries.
func List(path string) ([]Entry, error) {
	f, err := readFile(path)
	return f.Keys, err
}

// lock takes an advisory lock (flock(2), or LockFileEx on Windows) on FILE.lock beside the keys file at
// path, made if missing, and returns what releases it. Add and Revoke hold it from
// reading the file to renaming its successor in, so that two `burla keys` at once
// do not each rewrite what they read and lose the other's change. The lock is on a
// file of its own because the keys file is replaced on every write: a lock on it
// would be on a file no longer there; and the lock file is never removed, since
// one removed while held would let the next taker lock a new file. Both lock an
// open file, not a process, so goroutines of one process exclude each other too.
func lock(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock keys file: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock keys file %s: %w", f.Name(), err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// writeFile replaces the keys file atomically, so that a server reading it never
// sees half of it.
func writeFile(path string, f file) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keys-*")
	if err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("keys file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keys file: %w", err)
	}
	return nil
}

// ChildEnv is env with the key, if any, as the child's EnvKey and no other
// EnvKey: a component passes its children their own key, never its own.
func ChildEnv(env []string, key string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvKey+"=") {
			out = append(out, kv)
		}
	}
	if key != "" {
		out = append(out, EnvKey+"="+key)
	}
	return out
}
