// Package job describes a map job as every component sees it: the specification the
// SDK writes once, and the states a job passes through.
package job

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/burla-temporal/burla/gpu"
)

// Spec is what a job is: which function of which binary runs over how many inputs,
// with which resources. It is the JobWorkflow's argument and is handed to every node
// that works on the job, so it carries counts and digests, never inputs.
type Spec struct {
	ID string `json:"id"`
	// Tenant is who started the job. The authority is the ID (see TenantOf), which
	// is what the servers check access by; Validate refuses a Tenant that differs,
	// and an empty one (older clients) means TenantOf(ID).
	Tenant string `json:"tenant,omitempty"`
	// Cluster is the cluster the job runs on; empty means control.DefaultCluster.
	Cluster  string `json:"cluster,omitempty"`
	Function string `json:"function"`
	// Binary is the SHA-256 (hex) of the executable that serves Function in worker
	// mode; it is fetched from the blob store under BinaryKey(Binary).
	Binary string `json:"binary"`
	// Command, when set, is what runs instead of a Go function: once per input, the
	// input on its stdin, its stdout the output. Image names the image it runs in.
	Command []string `json:"command,omitempty"`
	Image   string   `json:"image,omitempty"`
	Inputs  int      `json:"inputs"`
	// FuncCPU and FuncRAMMB are the resources one call needs; a node with C CPUs runs
	// C/FuncCPU calls at once.
	FuncCPU   int `json:"func_cpu"`
	FuncRAMMB int `json:"func_ram_mb,omitempty"`
	// Dynamic is set when the caller fixed neither FuncCPU nor FuncRAM: a node
	// starts the job with one worker per CPU, and when a call runs out of memory
	// or its process is killed, it puts the input back in the queue and runs
	// fewer workers, each with more memory. The call fails only when it dies
	// with the node to itself.
	Dynamic        bool `json:"dynamic,omitempty"`
	MaxParallelism int  `json:"max_parallelism,omitempty"`
	// Grow lets the cluster start nodes for the job when too few are ready.
	Grow bool `json:"grow,omitempty"`
	// GPU is what one call needs of GPUs: a model the gpu package knows, alone
	// ("A100") or with a count ("A100:2"). Nodes without them do not take the job.
	GPU string `json:"gpu,omitempty"`
	// Region is the cloud region the job's nodes must be in ("us-central1");
	// DiskGB the least boot disk they must have. Empty or 0: any.
	Region string `json:"region,omitempty"`
	DiskGB int    `json:"disk_gb,omitempty"`
	// InputTimeout bounds one call; zero means no bound.
	InputTimeout time.Duration `json:"input_timeout,omitempty"`
	// Lease is how long a claimed chunk stays invisible to other workers while its
	// claimer keeps no sign of life; a worker extends it while it works.
	Lease time.Duration `json:"lease"`
	// Detached jobs run on without a client heartbeat once their inputs are
	// uploaded.
	Detached bool `json:"detached,omitempty"`
	// UploadWatched is set by clients that heartbeat a detached job until its
	// inputs are sealed: the job fails with ClientGone if they stop before. A
	// detached job of an older client, which is not watched at all, lacks it.
	UploadWatched bool `json:"upload_watched,omitempty"`
	// ClientTimeout is how long a job that is not detached survives its client's
	// silence, and a detached one (UploadWatched) while its inputs upload.
	ClientTimeout time.Duration `json:"client_timeout"`
	// Env names the environment variables the job's calls get besides the
	// worker's own. Their values are secrets, so they are not here (the spec is the
	// job workflow's argument, in its history) but in the blob EnvKey(ID).
	Env []string `json:"env,omitempty"`
	// Version is the job protocol the job needs (Needs, at most the client's
	// SpecVersion); 0 is a client from before versions, which speaks version 1.
	Version int `json:"version,omitempty"`
	// ReturnErrors keeps a job going after a call fails instead of failing it fast.
	ReturnErrors bool `json:"return_errors,omitempty"`
	// Retries is how many more times a failed call runs before it fails (the
	// function's error unless it is marked permanent, a panic, an exit, running
	// out of memory, a timeout); the worker waits RetryBackoff before the first
	// retry and twice as long before each next, up to MaxRetryBackoff. A call
	// that never ended because its node or worker was lost is not a failure and
	// does not count.
	Retries      int           `json:"retries,omitempty"`
	RetryBackoff time.Duration `json:"retry_backoff,omitempty"`
	Created      time.Time     `json:"created"`
}

// Validate reports the first thing wrong with s, naming the field.
func (s *Spec) Validate() error {
	switch {
	case !ValidID(s.ID):
		return fmt.Errorf("job spec: invalid job ID %q", s.ID)
	case TenantOf(s.ID) == "":
		return fmt.Errorf("job %s: its ID names no valid tenant", s.ID)
	case len(s.Function) > MaxFunctionName:
		return fmt.Errorf("job %s: function name of %d bytes is longer than %d", s.ID, len(s.Function), MaxFunctionName)
	case len(s.Env) > MaxEnvVars:
		return fmt.Errorf("job %s: %d environment variables, more than %d", s.ID, len(s.Env), MaxEnvVars)
	case s.Tenant != "" && s.Tenant != TenantOf(s.ID):
		return fmt.Errorf("job %s: tenant %q is not the tenant its ID names (%q)", s.ID, s.Tenant, TenantOf(s.ID))
	case s.Function == "":
		return fmt.Errorf("job %s: no function name", s.ID)
	case len(s.Command) > 0 && s.Command[0] == "":
		return fmt.Errorf("job %s: empty command", s.ID)
	case len(s.Command) == 0 && !ValidDigest(s.Binary):
		return fmt.Errorf("job %s: binary digest %q is not a SHA-256 hex digest", s.ID, s.Binary)
	case s.Inputs < 0:
		return fmt.Errorf("job %s: negative input count %d", s.ID, s.Inputs)
	case s.FuncCPU < 1:
		return fmt.Errorf("job %s: func_cpu %d is less than 1", s.ID, s.FuncCPU)
	case s.Retries < 0 || s.Retries > MaxRetries:
		return fmt.Errorf("job %s: retries %d is not between 0 and %d", s.ID, s.Retries, MaxRetries)
	case s.RetryBackoff < 0:
		return fmt.Errorf("job %s: negative retry_backoff %v", s.ID, s.RetryBackoff)
	case s.MaxParallelism < 0:
		return fmt.Errorf("job %s: negative max_parallelism %d", s.ID, s.MaxParallelism)
	case s.Lease <= 0:
		return fmt.Errorf("job %s: lease %v is not positive", s.ID, s.Lease)
	case s.Region != "" && !ValidRegion(s.Region):
		return fmt.Errorf("job %s: region %q is not a region name such as us-central1", s.ID, s.Region)
	case s.DiskGB != 0 && (s.DiskGB < MinDiskGB || s.DiskGB > MaxDiskGB):
		return fmt.Errorf("job %s: disk_gb %d is outside %d to %d", s.ID, s.DiskGB, MinDiskGB, MaxDiskGB)
	}
	if _, err := gpu.Parse(s.GPU); err != nil {
		return fmt.Errorf("job %s: gpu: %w", s.ID, err)
	}
	return nil
}

// GPUCount is how many GPUs one call of the job needs: the count of GPU, 0 for none.
func (s *Spec) GPUCount() int { return gpu.Count(s.GPU) }

// MinDiskGB is the least boot disk a job may ask its nodes for: what a node's
// image needs. MaxDiskGB is the most a boot disk can be.
const (
	MinDiskGB = 10
	MaxDiskGB = 65536
)

// ValidRegion reports whether r can name a cloud region: lower-case letters,
// then a dash, then lower-case letters and digits ending in a digit, and dashes
// between ("us-central1", "northamerica-northeast1"), at most 63 characters.
func ValidRegion(r string) bool {
	if len(r) > 63 || !strings.Contains(r, "-") || !lowerDigitsDashes(r) || r[0] < 'a' || r[0] > 'z' {
		return false
	}
	last := r[len(r)-1]
	return last >= '0' && last <= '9' && !strings.Contains(r, "--")
}

// SpecVersion is the job protocol this build speaks: what a Spec can ask for and
// how its data is laid out in the store. A cluster runs jobs of versions
// MinSpecVersion to SpecVersion; bump it when a job of this build would be run
// wrongly by a cluster that does not know its new parts.
//
// Version 2 added dynamic resources and the GPU, region and disk of a job's nodes;
// version 3, retries.
const (
	SpecVersion    = 3
	MinSpecVersion = 1
)

// Needs is the least job protocol that runs s as asked, which its client sends
// as Version: a cluster that does not know retries refuses a job that asks for
// them, and runs any other.
func (s *Spec) Needs() int {
	if s.Retries > 0 {
		return 3
	}
	return 2
}

// MaxRetries bounds Spec.Retries, and MaxRetryBackoff the wait before a retry.
const (
	MaxRetries      = 100
	MaxRetryBackoff = time.Minute
)

// CheckVersion reports, naming both sides and what to do, a spec this build of
// the cluster cannot run.
func (s *Spec) CheckVersion() error {
	v := max(s.Version, 1)
	switch {
	case v > SpecVersion:
		return fmt.Errorf("job %s: the client speaks job protocol %d and the cluster %d: upgrade the cluster to the client's burla version, or build the client against the cluster's", s.ID, v, SpecVersion)
	case v < MinSpecVersion:
		return fmt.Errorf("job %s: the client speaks job protocol %d, older than the %d the cluster needs at least: rebuild the client against the cluster's burla version", s.ID, v, MinSpecVersion)
	}
	return nil
}

// MaxEnvVars bounds the environment variables a job sets, and MaxEnvBytes the
// size of their names and values together.
const (
	MaxEnvVars  = 256
	MaxEnvBytes = 64 << 10
)

// ValidEnvName reports whether name can be a job's environment variable: a
// letter or underscore, then letters, digits and underscores, at most 128 of
// them, and not one of Burla's own (BURLA_…).
func ValidEnvName(name string) bool {
	if name == "" || len(name) > 128 || strings.HasPrefix(name, "BURLA_") || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// MaxFunctionName bounds a function's name, as the wire protocol does.
const MaxFunctionName = 1024

// ValidDigest reports whether d is a SHA-256 digest as the SDK writes it: 64
// lower-case hex digits. Digests name files and blob keys, so nothing else may pass.
func ValidDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for _, c := range []byte(d) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// State is where a job is in its life; it is the BurlaJobState search attribute.
type State string

const (
	StatePlacing   State = "Placing"
	StateRunning   State = "Running"
	StateSucceeded State = "Succeeded"
	StateFailed    State = "Failed"
	StateCancelled State = "Cancelled"
)

// Terminal reports whether no further change can happen to a job in state s.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// DefaultTenant is the tenant of a job started without an API key, on a cluster
// that does not ask for one.
const DefaultTenant = "default"

// idRandLen is the length of the part of a job ID after its tenant.
const idRandLen = 20

// NewID returns a fresh job ID for tenant: "j-", the tenant and a dash unless it is
// DefaultTenant, and 20 characters that sort by creation time.
func NewID(now time.Time, tenant string) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	if _, err := rand.Read(b[4:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	if tenant == "" || tenant == DefaultTenant {
		return "j-" + idEncoding.EncodeToString(b[:])
	}
	return "j-" + tenant + "-" + idEncoding.EncodeToString(b[:])
}

// TenantOf is the tenant whose job id is: the part between "j-" and the last 21
// characters, or DefaultTenant for an ID without one. Only NewID's IDs are
// meaningful; the result for any other string is still a tenant name or "".
func TenantOf(id string) string {
	rest, ok := strings.CutPrefix(id, "j-")
	if !ok {
		return ""
	}
	if len(rest) > idRandLen+1 && rest[len(rest)-idRandLen-1] == '-' {
		if t := rest[:len(rest)-idRandLen-1]; ValidTenant(t) {
			return t
		}
		return ""
	}
	return DefaultTenant
}

// ValidTenant reports whether t can name a tenant: 1 to 32 lower-case letters,
// digits and dashes, starting with a letter and not ending with a dash. Tenant
// names are parts of job IDs, store subjects and keys.
func ValidTenant(t string) bool {
	if t == "" || len(t) > 32 || t[0] < 'a' || t[0] > 'z' || t[len(t)-1] == '-' {
		return false
	}
	return lowerDigitsDashes(t)
}

// lowerDigitsDashes reports whether s holds only lower-case letters, digits and
// dashes: the characters that are safe in every store's keys and subjects.
func lowerDigitsDashes(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidID reports whether id is safe to use as a job ID in store keys, subjects and
// workflow IDs: "j-" followed by 1 to 64 lower-case letters, digits or dashes.
func ValidID(id string) bool {
	rest, ok := strings.CutPrefix(id, "j-")
	return ok && len(rest) > 0 && len(rest) <= 64 && lowerDigitsDashes(rest)
}
