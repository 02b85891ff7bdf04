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
)

// Spec is what a job is: which function of which binary runs over how many inputs,
// with which resources. It is the JobWorkflow's argument and is handed to every node
// that works on the job, so it carries counts and digests, never inputs.
type Spec struct {
	ID string `json:"id"`
	// Cluster is the cluster the job runs on; empty means names.DefaultCluster.
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
	FuncCPU        int `json:"func_cpu"`
	FuncRAMMB      int `json:"func_ram_mb,omitempty"`
	MaxParallelism int `json:"max_parallelism,omitempty"`
	// Grow lets the cluster start nodes for the job when too few are ready.
	Grow bool `json:"grow,omitempty"`
	// InputTimeout bounds one call; zero means no bound.
	InputTimeout time.Duration `json:"input_timeout,omitempty"`
	// Lease is how long a claimed chunk stays invisible to other workers while its
	// claimer keeps no sign of life; a worker extends it while it works.
	Lease time.Duration `json:"lease"`
	// Detached jobs run on without a client heartbeat.
	Detached bool `json:"detached,omitempty"`
	// ClientTimeout is how long a job that is not detached survives its client's silence.
	ClientTimeout time.Duration `json:"client_timeout"`
	// ReturnErrors keeps a job going after a call fails instead of failing it fast.
	ReturnErrors bool      `json:"return_errors,omitempty"`
	Created      time.Time `json:"created"`
}

// Validate reports the first thing wrong with s, naming the field.
func (s *Spec) Validate() error {
	switch {
	case !ValidID(s.ID):
		return fmt.Errorf("job spec: invalid job ID %q", s.ID)
	case s.Function == "":
		return fmt.Errorf("job %s: no function name", s.ID)
	case len(s.Command) > 0 && s.Command[0] == "":
		return fmt.Errorf("job %s: empty command", s.ID)
	case len(s.Command) == 0 && len(s.Binary) != 64:
		return fmt.Errorf("job %s: binary digest %q is not a SHA-256 hex digest", s.ID, s.Binary)
	case s.Inputs < 0:
		return fmt.Errorf("job %s: negative input count %d", s.ID, s.Inputs)
	case s.FuncCPU < 1:
		return fmt.Errorf("job %s: func_cpu %d is less than 1", s.ID, s.FuncCPU)
	case s.MaxParallelism < 0:
		return fmt.Errorf("job %s: negative max_parallelism %d", s.ID, s.MaxParallelism)
	case s.Lease <= 0:
		return fmt.Errorf("job %s: lease %v is not positive", s.ID, s.Lease)
	}
	return nil
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

// NewID returns a fresh job ID: "j-" and 20 characters that sort by creation time.
func NewID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	if _, err := rand.Read(b[4:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return "j-" + idEncoding.EncodeToString(b[:])
}

// ValidID reports whether id is safe to use as a job ID in store keys, subjects and
// workflow IDs: "j-" followed by 1 to 64 lower-case letters, digits or dashes.
func ValidID(id string) bool {
	rest, ok := strings.CutPrefix(id, "j-")
	if !ok || len(rest) == 0 || len(rest) > 64 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// BinaryKey is the blob-store key of an executable with the given SHA-256 digest.
func BinaryKey(digest string) string { return "bin-" + digest }
