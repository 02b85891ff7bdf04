package job

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// A tenant's shared files are a directory every call of the tenant's jobs sees
// (Burla's /workspace/shared), kept in the blob store under SharedPrefix(tenant)
// and synced by each worker to and from a local directory. They persist across
// jobs until deleted.

// EnvSharedDir is the environment variable that names the shared directory to a
// worker and to the calls it runs.
const EnvSharedDir = "BURLA_SHARED_DIR"

// MaxSharedName bounds a shared file's name, in bytes, so that its key fits every
// blob store's limit (Cloud Storage's 1024 bytes, with a prefix).
const MaxSharedName = 900

// SharedKeyPrefix starts the key of every tenant's shared files.
const SharedKeyPrefix = "shared-"

// IsSharedKey reports whether key is a shared file's, or a prefix of such keys
// longer than SharedKeyPrefix: stores may keep them apart from other blobs.
func IsSharedKey(key string) bool { return strings.HasPrefix(key, SharedKeyPrefix) }

// SharedPrefix is the blob-store key prefix of tenant's shared files. It names the
// tenant, so a store that keeps tenants apart lists them in the tenant's own
// space (see BlobTenant).
func SharedPrefix(tenant string) string {
	if tenant == "" {
		tenant = DefaultTenant
	}
	return SharedKeyPrefix + tenant + "/"
}

// SharedKey is the blob-store key of tenant's shared file name (see
// CheckSharedName).
func SharedKey(tenant, name string) string { return SharedPrefix(tenant) + name }

// sharedTenant is the tenant of a shared file's key or of a prefix of the form
// SharedPrefix(tenant)….
func sharedTenant(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, SharedKeyPrefix)
	if !ok {
		return "", false
	}
	tenant, _, ok := strings.Cut(rest, "/")
	if !ok || !ValidTenant(tenant) {
		return "", false
	}
	return tenant, true
}

// ErrBadSharedName is wrapped by CheckSharedName's errors.
var ErrBadSharedName = errors.New("invalid shared file name")

// reservedPrefix starts the names of the files a worker writes in the shared
// directory while it downloads; no shared file may have one.
const reservedPrefix = ".burla-"

// CheckSharedName says what is wrong with name as a shared file's name, or returns
// nil: a relative path of slash-separated segments, none of them empty, "." or
// "..", in UTF-8 without NUL, CR or LF, at most MaxSharedName bytes, no segment
// starting with ".burla-" (the worker's own temporary files).
func CheckSharedName(name string) error {
	var problem string
	switch {
	case name == "":
		problem = "it is empty"
	case strings.HasPrefix(name, "/"):
		problem = "it is an absolute path; name files relative to the shared directory"
	case strings.HasSuffix(name, "/"):
		problem = "it ends with /; name a file, not a directory"
	case len(name) > MaxSharedName:
		return fmt.Errorf("%w: %.40q… is %d bytes, longer than %d", ErrBadSharedName, name, len(name), MaxSharedName)
	case !utf8.ValidString(name):
		problem = "it is not UTF-8"
	case strings.ContainsAny(name, "\x00\r\n"):
		problem = "it contains NUL, CR or LF"
	default:
		for seg := range strings.SplitSeq(name, "/") {
			switch {
			case seg == "":
				problem = "it has an empty segment (//)"
			case seg == "..":
				problem = `it has a ".." segment; names cannot leave the shared directory`
			case seg == ".":
				problem = `it has a "." segment`
			case strings.HasPrefix(seg, reservedPrefix):
				problem = "a segment starts with " + reservedPrefix + ", which the worker's temporary files use"
			}
			if problem != "" {
				break
			}
		}
		if problem == "" {
			return nil
		}
	}
	return fmt.Errorf("%w %q: %s", ErrBadSharedName, name, problem)
}

// IsSharedTemp reports whether a file's base name is one of a worker's temporary
// files in the shared directory, which are never uploaded.
func IsSharedTemp(base string) bool { return strings.HasPrefix(base, reservedPrefix) }

// SharedTempPattern is the os.CreateTemp pattern of a worker's temporary files in
// the shared directory.
const SharedTempPattern = reservedPrefix + "tmp-*"
