package tenantbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// A container worker holds the node's API key, a key of a system role that reads
// every tenant's data, and runs tenants' code as its children. What keeps the key
// from that code: the code's environment is made from an allow-list (UserEnv); the
// worker is non-dumpable, so that its /proc files and memory are closed to its
// children (Isolate, Start); and tenants' code never runs as root, which
// could read the worker's memory, and every file of the node's, anyway (Isolate,
// and containerworker.Inspect's inspectBox).

// TenantUID and TenantGID are the user and group tenants' code runs as where no
// other is given: 65534, nobody, as in the docker runtime's containers, which see
// no process but their own. On a machine whose processes tenants' code can see (the
// process runtime, the inspector) each worker is given a user of its own instead
// (NewTenantUID), so that one job's processes cannot read another's, on another
// node of the same machine or after it on the same node.
const (
	TenantUID = 65534
	TenantGID = 65534
)

// EnvTenantUID names, in a container worker's environment, the user (and group,
// of the same number) that the worker, started as root, becomes; unset, it becomes
// TenantUID.
const EnvTenantUID = "BURLA_TENANT_UID"

// Users made by NewTenantUID are in [tenantUIDBase, tenantUIDEnd): far above the
// ranges that systems and container engines hand out.
const (
	tenantUIDBase = 0x10000000
	tenantUIDEnd  = 0x20000000
)

var tenantSeq atomic.Uint32

// NewTenantUID returns a user ID for one worker's (or one inspection's) tenant
// code that no other live process of ours on this machine uses: it is made of this
// process's PID (unique while it lives; at most 2^22 on Linux) and a count of the
// users it has made, which comes round after 64. ReapTenant clears a user's
// processes and files before that.
func NewTenantUID() uint32 {
	n := tenantSeq.Add(1) % 64
	return tenantUIDBase + uint32(os.Getpid())%0x400000<<6 + n
}

// tenantUID is the user this container worker becomes: EnvTenantUID's, or TenantUID.
func tenantUID() (uint32, error) {
	v := os.Getenv(EnvTenantUID)
	if v == "" {
		return TenantUID, nil
	}
	uid, err := strconv.ParseUint(v, 10, 32)
	if err != nil || uid < tenantUIDBase || uid >= tenantUIDEnd {
		return 0, fmt.Errorf("%s=%q is not a user NewTenantUID makes", EnvTenantUID, v)
	}
	return uint32(uid), nil
}

// Isolate readies this process, a container worker, to hold the node's key with
// tenants' code as its children. It is the first thing `burla container-worker`
// does. Linux only.
//
// Started as root (the process runtime of an agent that is root), the worker
// becomes TenantUID, with no supplementary groups and no capabilities left, and so
// does the code it runs. Running only its children as TenantUID would not do: the
// worker syncs the tenant's shared directory, which the tenant's code writes, and a
// worker that is root would follow the links that code plants there to read and
// write any file of the node's. The runtime gives such a worker a directory of its
// own that TenantUID can reach (see runtime/process).
//
// And the worker makes itself non-dumpable, so that its /proc/PID/environ, mem,
// maps and the like are closed to every process without CAP_SYS_PTRACE, those of
// its own user included: the key in its environment and memory is out of its
// calls' reach. On the docker runtime the worker and its calls share uid 65534 in
// a container with no capabilities (and no-new-privileges), so this is what keeps
// the key from them there.
func Isolate() error {
	if os.Geteuid() == 0 {
		uid, err := tenantUID()
		if err != nil {
			return err
		}
		if err := dropRoot(int(uid)); err != nil {
			return fmt.Errorf("run as uid %d instead of root: %w", uid, err)
		}
	}
	return hide()
}

// dropRoot makes this process user and group uid, in every thread, for good.
func dropRoot(uid int) error {
	ppid := os.Getppid()
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(uid, uid, uid); err != nil {
		return fmt.Errorf("set group: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("set user: %w", err)
	}
	// Changing user cleared the signal that ends this worker when its agent dies
	// (the runtime's Pdeathsig): ask for it again, and end if the agent is gone already.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", e)
	}
	if os.Getppid() != ppid {
		return errors.New("its parent exited while it changed user")
	}
	return nil
}

// hide makes this process non-dumpable (see Isolate). Whatever process starts
// tenants' code does it first: a container worker has already, the control plane
// has (cmd/burla), but the inspector or a worker may run elsewhere, in a test.
func hide() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", e)
	}
	return nil
}

// prSetNoNewPrivs is prctl's PR_SET_NO_NEW_PRIVS, which package syscall lacks.
const prSetNoNewPrivs = 38

// Start starts cmd, a process of a tenant's code, once this process is
// hidden from it (hide), and with no_new_privs set: no program it execs gains a
// privilege by a set-user-ID bit or file capabilities, so that a setuid-root
// program of the node's is no way back to root, as no-new-privileges ensures in
// the docker runtime's containers. The caller calls release once cmd has been
// waited for.
//
// no_new_privs belongs to a thread, which the processes it forks inherit and which
// it keeps for good. So every tenant process is forked by one thread, the forker,
// which has it and serves nothing else for the life of this process. That thread
// must never end: a child's Pdeathsig fires when the thread that forked it ends,
// and the thread the forker locked may have forked other children before (in
// burla dev, the node agents), which an ending thread would kill.
func Start(cmd *exec.Cmd) (release func(), err error) {
	if err := hide(); err != nil {
		return nil, err
	}
	forker.once.Do(startForker)
	if forker.err != nil {
		return nil, forker.err
	}
	done := make(chan error, 1)
	forker.reqs <- forkRequest{cmd: cmd, done: done}
	if err := <-done; err != nil {
		return nil, err
	}
	return func() {}, nil
}

// forker is the thread that forks tenants' processes (see Start).
var forker struct {
	once sync.Once
	reqs chan forkRequest
	err  error // why there is none
}

type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func startForker() {
	forker.reqs = make(chan forkRequest)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // for good: see Start
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
			// Nothing was set on the thread: it may serve other goroutines again.
			runtime.UnlockOSThread()
			ready <- fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", e)
			return
		}
		ready <- nil
		for r := range forker.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	forker.err = <-ready
}

// Credential is user and group uid, with no supplementary groups, for a
// process of a tenant's code.
func Credential(uid uint32) *syscall.Credential {
	return &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
}

// CheckTenantReach returns nil if TenantUID can reach dir by its path, and
// otherwise an error that names the first directory on the way that it may not
// search. (Access control lists are not consulted.)
func CheckTenantReach(dir string) error {
	p, err := filepath.Abs(dir)
	if err == nil {
		p, err = filepath.EvalSymlinks(p)
	}
	if err != nil {
		return fmt.Errorf("can uid %d reach %s: %w", TenantUID, dir, err)
	}
	for {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("can uid %d reach %s: %w", TenantUID, dir, err)
		}
		search := fs.FileMode(0o001)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			switch {
			case st.Uid == TenantUID:
				search = 0o100
			case st.Gid == TenantGID:
				search = 0o010
			}
		}
		if fi.Mode().Perm()&search == 0 {
			return fmt.Errorf("uid %d cannot reach %s: it may not search %s (mode %#o)", TenantUID, dir, p, fi.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
		p = filepath.Dir(p)
	}
}

// ReapTenant ends every process of user uid (one made by NewTenantUID) and removes
// the files it left in the machine's shared temporary directories, once the worker
// or inspection it was made for is over: a process a job started in a session of
// its own, or a file it wrote in /tmp, must not outlive the job to watch or feed the
// next one. Only root can; elsewhere it does nothing.
func ReapTenant(uid uint32) error {
	if os.Geteuid() != 0 || uid < tenantUIDBase || uid >= tenantUIDEnd {
		return nil
	}
	// A process may fork while it is looked for: look again until none is left.
	for round := 0; ; round++ {
		pids := processesOf(uid)
		if len(pids) == 0 {
			break
		}
		if round == 50 {
			return fmt.Errorf("uid %d still has processes %v", uid, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var errs []error
	for _, dir := range []string{os.TempDir(), "/var/tmp", "/dev/shm"} {
		errs = append(errs, removeOwned(dir, uid))
	}
	return errors.Join(errs...)
}

// processesOf lists the processes whose real or effective user is uid.
func processesOf(uid uint32) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		// /proc/PID belongs to the process's effective user.
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && st.Uid == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeOwned removes what uid owns in dir (a world-writable directory), and in
// the world-writable directories in it, one level down: where a user may make
// files outside its own directories. It does not walk all of /tmp, which can be
// large and busy.
func removeOwned(dir string, uid uint32) error {
	return removeOwnedIn(dir, uid, 2)
}

func removeOwnedIn(dir string, uid uint32, depth int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // gone, or closed to us: nothing of uid's to find there
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		switch {
		case !ok:
		case st.Uid == uid:
			if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		case fi.IsDir() && fi.Mode().Perm()&0o002 != 0 && depth > 1:
			errs = append(errs, removeOwnedIn(p, uid, depth-1))
		}
	}
	return errors.Join(errs...)
}
