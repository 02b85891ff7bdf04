// Package tenantbox runs tenants' code apart from the node's key: as a user of
// its own, never root; as the child of a worker that is not dumpable, so that the
// worker's memory and environment are closed to it; forked by one thread that set
// no_new_privs, so that no program it runs gains a privilege; with what it leaves,
// processes and temporary files, reaped once its worker is over; and with an
// environment made from an allow-list. The container worker (containerworker, and
// its inspector) runs tenants' code through it; the process and docker runtimes
// (runtime/process, runtime/docker) ready their workers by it.
//
// Where each part lives:
//
//	isolate.go   running tenants' code apart from the node's key: its own user
//	             (TenantUID, NewTenantUID, Credential, CheckTenantReach), a
//	             non-dumpable worker (Isolate), one forker thread (Start), reaping
//	             what it leaves (ReapTenant)
//	childenv.go  the allow-listed environment tenants' code gets (UserEnv,
//	             EnvImageEnv)
package tenantbox
