package tenantbox

import (
	"os"
	"strings"

	"github.com/burla-temporal/burla/job"
)

// UserEnv is the environment of a process that runs a tenant's code (a job's
// program, its command, or a program the control plane inspects), made from this
// process's own environment, parent ("NAME=value"), by an allow-list: whatever
// else the node's environment holds — the node's API key, Temporal's key and TLS
// files, a cloud's credentials, an operator's tokens — never reaches a tenant, even
// where nobody thought to take it out.
//
// Of parent, only these pass:
//
//   - PATH, LANG, LANGUAGE, LC_* and TZ: to find programs, and to read, write and
//     date text as the node does;
//   - LD_LIBRARY_PATH: where an image keeps its shared libraries (CUDA's);
//   - GOMAXPROCS, GOMEMLIMIT, GOGC and GODEBUG: the Go runtime's settings, where
//     the node gave its workers some;
//   - CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES:
//     the GPUs the runtime gave the worker;
//   - job.EnvSharedDir: the tenant's shared files, which the SDK's SharedDir names;
//   - the variables the worker's image sets itself (EnvImageEnv), on the docker
//     runtime.
//
// HOME and TMPDIR are scratch, the worker's scratch directory. Then come vars, in
// order: the job's own variables (spec.Env, read from the job's environment blob)
// and the worker's for the program (wire.EnvWorker, wire.EnvMarker), which are all
// the SDK's worker mode reads. A name given again takes its later value, in the
// place of its first.
func UserEnv(parent []string, scratch string, vars ...[]string) []string {
	var env []string
	at := map[string]int{} // where each name is in env
	set := func(kv string) {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return
		}
		if i, ok := at[name]; ok {
			env[i] = kv
			return
		}
		at[name] = len(env)
		env = append(env, kv)
	}
	for _, kv := range parent {
		if name, _, ok := strings.Cut(kv, "="); ok && passes(name) {
			set(kv)
		}
	}
	if scratch != "" {
		set("HOME=" + scratch)
		set("TMPDIR=" + scratch)
	}
	for _, vs := range vars {
		for _, kv := range vs {
			set(kv)
		}
	}
	return env
}

// passed are the variables of the worker's environment that UserEnv passes on.
var passed = map[string]bool{
	"PATH": true, "LANG": true, "LANGUAGE": true, "TZ": true,
	"LD_LIBRARY_PATH": true,
	"GOMAXPROCS":      true, "GOMEMLIMIT": true, "GOGC": true, "GODEBUG": true,
	"CUDA_VISIBLE_DEVICES": true, "NVIDIA_VISIBLE_DEVICES": true, "NVIDIA_DRIVER_CAPABILITIES": true,
	job.EnvSharedDir: true,
}

func passes(name string) bool {
	return passed[name] || strings.HasPrefix(name, "LC_") || imageEnv[name] && !strings.HasPrefix(name, "BURLA_")
}

// EnvImageEnv names, in a container worker's environment, the variables (comma
// separated) that the worker's image sets itself: the docker runtime's workers run
// in the user's image, whose programs expect its PYTHONPATH, JAVA_HOME and the
// like, so UserEnv passes those on too (but none of Burla's own).
const EnvImageEnv = "BURLA_IMAGE_ENV"

// imageEnv is the set EnvImageEnv names in this process's environment.
var imageEnv = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Split(os.Getenv(EnvImageEnv), ",") {
		if name != "" {
			m[name] = true
		}
	}
	return m
}()
