package job

import (
	"fmt"
	"strconv"
	"strings"
)

// The blob store's keys are made and read here alone: a key names whose blob it
// is, and the store and the workers decide what a caller may read by it.

// BinaryKey is the blob-store key of the default tenant's executable with the
// given SHA-256 digest.
func BinaryKey(digest string) string { return BinaryKeyFor(DefaultTenant, digest) }

// BinaryKeyFor is the blob-store key of tenant's executable with the given SHA-256
// digest. Each tenant ships its own programs, so no tenant can fetch another's by
// its digest.
func BinaryKeyFor(tenant, digest string) string { return tenantKey("bin-", tenant, digest) }

// ManifestKeyFor is the blob-store key of the manifest of tenant's executable
// with the given SHA-256 digest, shipped in chunks (package ship). It is the
// program's key as the collector sees it: a job's use is marked on it.
func ManifestKeyFor(tenant, digest string) string { return tenantKey("man-", tenant, digest) }

// PackKeyFor is the blob-store key of tenant's pack of executable chunks with
// the given SHA-256 digest (package ship).
func PackKeyFor(tenant, digest string) string { return tenantKey("pack-", tenant, digest) }

// programPrefixes are the keys of tenants' programs and their parts, each
// followed by "<tenant>." and a digest, or by a digest alone for the default
// tenant.
var programPrefixes = []string{"bin-", "man-", "pack-"}

func tenantKey(prefix, tenant, digest string) string {
	if tenant == "" || tenant == DefaultTenant {
		return prefix + digest
	}
	return prefix + tenant + "." + digest
}

// EnvKey is the blob-store key of a job's environment variables: a JSON object
// of names and values.
func EnvKey(jobID string) string { return "env-" + jobID }

// InputKey is the blob-store key of a job's input too large for a chunk.
func InputKey(jobID string, index int64) string {
	return "in-" + jobID + "-" + strconv.FormatInt(index, 10)
}

// OutputKey is the blob-store key of a job's output too large for a result.
func OutputKey(jobID string, index int64) string {
	return "out-" + jobID + "-" + strconv.FormatInt(index, 10)
}

// CheckInputKey says why key is not the blob of input index of job jobID, or nil:
// a chunk is written by the job's client, and a worker must load nothing through
// it but that job's own inputs (not another job's, not an environment or a shared
// file), whatever key the chunk names.
func CheckInputKey(jobID string, index int64, key string) error {
	if key != InputKey(jobID, index) {
		return fmt.Errorf("input %d names blob %q, which is not that input of job %s", index, key, jobID)
	}
	return nil
}

// CheckOutputKey is CheckInputKey for an output a client reads.
func CheckOutputKey(jobID string, index int64, key string) error {
	if key != OutputKey(jobID, index) {
		return fmt.Errorf("the output of input %d names blob %q, which is not that output of job %s", index, key, jobID)
	}
	return nil
}

// UsedKey is the blob-store key of the marker that says when a job last ran the
// program stored under binKey (BinaryKeyFor): the collector deletes programs
// that no job has run for a while.
func UsedKey(binKey string) string { return "used-" + binKey }

// BlobJob returns the job whose environment (EnvKey), large input (InputKey) or
// large output (OutputKey) key is, and which of the three it is ("env", "in" or
// "out"); ok is false for any other key.
func BlobJob(key string) (jobID, kind string, ok bool) {
	if rest, found := strings.CutPrefix(key, "env-"); found && ValidID(rest) {
		return rest, "env", true
	}
	for _, kind := range []string{"in", "out"} {
		rest, found := strings.CutPrefix(key, kind+"-")
		if !found {
			continue
		}
		i := strings.LastIndexByte(rest, '-')
		if i <= 0 || !ValidID(rest[:i]) {
			return "", "", false
		}
		if _, err := strconv.ParseInt(rest[i+1:], 10, 64); err != nil {
			return "", "", false
		}
		return rest[:i], kind, true
	}
	return "", "", false
}

// BlobTenant is the tenant whose blob key is: of an executable (BinaryKeyFor,
// ManifestKeyFor, PackKeyFor), of
// a job's environment (EnvKey), of a job's large input or output (InputKey,
// OutputKey), or of a shared file (SharedKey; a prefix of one that names its
// tenant too). It is "" for any other key.
func BlobTenant(key string) string {
	if tenant, ok := sharedTenant(key); ok {
		return tenant
	}
	for _, prefix := range programPrefixes {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		if tenant, _, ok := strings.Cut(rest, "."); ok {
			if ValidTenant(tenant) {
				return tenant
			}
			return ""
		}
		return DefaultTenant
	}
	if rest, ok := strings.CutPrefix(key, "env-"); ok && ValidID(rest) {
		return TenantOf(rest)
	}
	rest, ok := strings.CutPrefix(key, "in-")
	if !ok {
		rest, ok = strings.CutPrefix(key, "out-")
	}
	if i := strings.LastIndexByte(rest, '-'); ok && i > 0 && ValidID(rest[:i]) {
		return TenantOf(rest[:i])
	}
	return ""
}
