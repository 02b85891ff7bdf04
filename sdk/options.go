package burla

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/burla-temporal/burla/gpu"
	"github.com/burla-temporal/burla/job"
)

// Option configures one map call.
type Option func(*options)

type options struct {
	funcCPU        int
	funcRAMMB      int
	fixed          bool // FuncCPU or FuncRAM was given: resources are not dynamic
	maxParallelism int
	grow           bool
	funcGPU        string // canonical once built: "A100", "A100:2"
	region         string
	diskGB         int
	inputTimeout   time.Duration
	lease          time.Duration
	spinner        *bool
	detach         bool
	binary         string
	image          string
	cluster        *Cluster
	onLog          func(LogLine)
	stdout, stderr io.Writer
	clientTimeout  time.Duration
	onStart        func(jobID string)
	apiKey         string
	returnErrors   bool
	retries        int
	retryBackoff   time.Duration
	stallTimeout   time.Duration
	env            map[string]string
	forwardEnv     []string
}

func buildOptions(opts []Option) (options, error) {
	o := options{funcCPU: 1, lease: 5 * time.Second, clientTimeout: 10 * time.Second, stdout: os.Stdout, stderr: os.Stderr, retryBackoff: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.funcCPU < 1:
		return o, fmt.Errorf("burla: FuncCPU(%d): need at least 1 CPU", o.funcCPU)
	case o.funcRAMMB < 0:
		return o, fmt.Errorf("burla: FuncRAM(%d): negative", o.funcRAMMB)
	case o.maxParallelism < 0:
		return o, fmt.Errorf("burla: MaxParallelism(%d): negative", o.maxParallelism)
	case o.stallTimeout < 0:
		return o, fmt.Errorf("burla: StallTimeout(%v): negative", o.stallTimeout)
	case o.retries < 0 || o.retries > job.MaxRetries:
		return o, fmt.Errorf("burla: Retries(%d): want 0 to %d", o.retries, job.MaxRetries)
	case o.retryBackoff < 0 || o.retryBackoff > job.MaxRetryBackoff:
		return o, fmt.Errorf("burla: RetryBackoff(%v): want 0 to %v", o.retryBackoff, job.MaxRetryBackoff)
	case o.inputTimeout < 0:
		return o, fmt.Errorf("burla: InputTimeout(%v): negative", o.inputTimeout)
	case o.lease < 500*time.Millisecond:
		return o, fmt.Errorf("burla: Lease(%v): must be at least 500ms", o.lease)
	case o.region != "" && !job.ValidRegion(o.region):
		return o, fmt.Errorf("burla: Region(%q): not a region name such as us-central1", o.region)
	case o.diskGB != 0 && (o.diskGB < job.MinDiskGB || o.diskGB > job.MaxDiskGB):
		return o, fmt.Errorf("burla: DiskGB(%d): want %d to %d GB (a node's image needs %d)", o.diskGB, job.MinDiskGB, job.MaxDiskGB, job.MinDiskGB)
	}
	g, err := gpu.Parse(o.funcGPU)
	if err != nil {
		return o, fmt.Errorf("burla: FuncGPU: %w", err)
	}
	o.funcGPU = g.String()
	return o, nil
}

// FuncCPU fixes the CPUs each call gets: a node with C CPUs runs C/n calls at once.
//
// Without FuncCPU and FuncRAM a job's resources are dynamic, as in Burla: a node
// runs one call per CPU, each with an equal share of its memory, and when a call
// runs out of memory (or its process is killed) the node puts the input back in
// the queue and halves the calls it runs at once, giving each more memory. The call
// fails, with a RemoteError of kind "oom", only when it runs out of memory with the
// node to itself. A fixed FuncCPU or FuncRAM turns this off: a call that runs out
// of memory fails at once.
func FuncCPU(n int) Option { return func(o *options) { o.funcCPU, o.fixed = n, true } }

// FuncRAM fixes the memory each call needs, in GB: a node runs no more calls at
// once than its memory holds, and a call that uses more is killed (on the docker
// runtime) and fails. See FuncCPU for the dynamic default.
func FuncRAM(gb int) Option { return func(o *options) { o.funcRAMMB, o.fixed = gb*1024, true } }

// MaxParallelism bounds how many calls run at once across the cluster.
func MaxParallelism(n int) Option { return func(o *options) { o.maxParallelism = n } }

// Grow lets the cluster start more nodes for the job when it wants more parallelism
// (inputs or MaxParallelism × FuncCPU) than the ready nodes give. Without it the job
// runs on the nodes there are, and takes more as other jobs free them.
func Grow() Option { return func(o *options) { o.grow = true } }

// FuncGPU gives each call GPUs: a model ("A100", "A100_80G", "H100", "L4", "T4",
// "V100"), alone for one GPU or with a count ("A100:2"). The job runs only on
// nodes that have them; a gce cluster starts such nodes for a job with Grow. A
// cluster that has none and cannot start one fails the job at once with an
// error of kind KindNoCompatibleNodes.
func FuncGPU(model string) Option { return func(o *options) { o.funcGPU = model } }

// Region runs the job only on nodes in the named cloud region ("us-central1"); a
// gce cluster starts nodes there for a job with Grow.
func Region(name string) Option { return func(o *options) { o.region = name } }

// DiskGB runs the job only on nodes whose boot disk has at least gb GB (10 or
// more); a gce cluster starts such nodes for a job with Grow.
func DiskGB(gb int) Option { return func(o *options) { o.diskGB = gb } }

// InputTimeout bounds each call; a call that runs longer fails with a RemoteError of
// kind "timeout" and its process is killed. The function's context carries the
// deadline too.
func InputTimeout(d time.Duration) Option { return func(o *options) { o.inputTimeout = d } }

// Lease sets how long a chunk of inputs claimed by a worker that stops answering
// stays hidden before another worker takes it (default 5s). Live workers extend it.
func Lease(d time.Duration) Option { return func(o *options) { o.lease = d } }

// Spinner turns the progress display on stderr on (a bar redrawn in place) or off.
// By default a terminal gets the bar, and other writers (a log file, CI) a plain
// progress line every 10 seconds.
func Spinner(on bool) Option { return func(o *options) { o.spinner = &on } }

// Detach lets the job run on when the caller goes away: its context's cancellation
// and the end of its heartbeat no longer cancel the job. Submit then returns only
// once every input is in the cluster's store (showing the upload's progress), so
// that the program may exit; a program that dies before that loses its job, which
// fails with ClientGone within ClientTimeout and frees its nodes. Re-attach with
// Attach.
func Detach() Option { return func(o *options) { o.detach = true } }

// Binary ships the linux executable at path instead of the running program. It must
// register the function under the same name.
func Binary(path string) Option { return func(o *options) { o.binary = path } }

// Image runs the job's workers in the named image, which must be on the cluster's
// Docker engine (no registry is pulled from); the container worker is layered onto
// it once. It needs nodes that run workers in containers (`burla dev --runtime
// docker`); the program shipped must be able to run in the image.
func Image(name string) Option { return func(o *options) { o.image = name } }

// OnCluster runs the job on c instead of the cluster found from the environment.
func OnCluster(c *Cluster) Option { return func(o *options) { o.cluster = c } }

// APIKey runs the job with key, on a cluster that asks for API keys, instead of
// the key in BURLA_API_KEY. The key names the tenant the job belongs to: only
// keys of that tenant (and the cluster's operators) can list, attach to, cancel
// or read the job. Make keys with `burla keys add --tenant NAME`.
func APIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// Env sets environment variables for the job's calls, on top of the worker's
// own: configuration and secrets. Their values never go into the job's workflow
// history, its logs or the dashboard; they are kept in the cluster's store, in the
// tenant's own part of it, and given only to this job's calls. Names are letters,
// digits and underscores; BURLA_… is reserved. Several Env options add up.
func Env(vars map[string]string) Option {
	return func(o *options) {
		if o.env == nil {
			o.env = map[string]string{}
		}
		for k, v := range vars {
			o.env[k] = v
		}
	}
}

// ForwardEnv gives the job's calls the named variables of this program's own
// environment, as Env does; each must be set.
func ForwardEnv(names ...string) Option {
	return func(o *options) { o.forwardEnv = append(o.forwardEnv, names...) }
}

// ReturnErrors runs every input even when some calls fail, instead of failing the
// job on its first failed call. Results yields each failed input's *RemoteError
// and goes on; Outputs and RemoteParallelMap return every output, the zero value
// where a call failed, with an *InputErrors that lists the failed inputs by index.
func ReturnErrors() Option { return func(o *options) { o.returnErrors = true } }

// Retries runs a failed call up to n more times before it fails: a call whose
// function returned an error (unless marked with Permanent), panicked, exited,
// ran out of memory or ran past InputTimeout. The retries wait RetryBackoff (1 s
// by default) before the first, twice as long before each next, at most a
// minute. The failures of a call's earlier attempts are kept: Result.Earlier for
// a call that then succeeded, RemoteError.Earlier for one that failed each time.
// A call that never ended because its node or worker was lost is run again as
// always, and does not count as an attempt.
func Retries(n int) Option { return func(o *options) { o.retries = n } }

// RetryBackoff is the wait before a failed call's first retry (see Retries).
func RetryBackoff(d time.Duration) Option { return func(o *options) { o.retryBackoff = d } }

// StallTimeout fails a job in which no input has finished for d: the job is
// cancelled (unless detached) and its caller gets an *Error of kind JobStalled
// that says what the job was waiting for (nodes booting, every node busy with
// another job, …) and since when. By default a job waits as long as it must.
func StallTimeout(d time.Duration) Option { return func(o *options) { o.stallTimeout = d } }

// OnStart calls fn with the job's ID as soon as the job has started.
func OnStart(fn func(jobID string)) Option { return func(o *options) { o.onStart = fn } }

// LogLine is one line a call printed.
type LogLine struct {
	Index  int    // the input's index
	Stderr bool   // printed to stderr rather than stdout
	Text   string // without its newline
}

// OnLog sends each line the calls print to fn instead of this program's stdout and
// stderr. fn is called from one goroutine at a time.
func OnLog(fn func(LogLine)) Option { return func(o *options) { o.onLog = fn } }

// Output prints the calls' lines to stdout and stderr instead of os.Stdout and
// os.Stderr; the spinner goes to stderr too.
func Output(stdout, stderr io.Writer) Option {
	return func(o *options) { o.stdout, o.stderr = stdout, stderr }
}

// ClientTimeout is how long a job that is not detached survives without hearing
// from this program (default 10s), and a detached one while its inputs upload;
// the program heartbeats every second.
func ClientTimeout(d time.Duration) Option { return func(o *options) { o.clientTimeout = d } }
