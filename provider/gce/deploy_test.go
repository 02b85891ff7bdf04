package gce

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The scripts of deploy/gcp, which set up the project the gce provider's VMs run
// in and the control plane's VM, run here against a stand-in for gcloud.

const (
	deployDir   = "../../deploy/gcp"
	testProject = "burla-proj"
	nodeAccount = "serviceAccount:burla-node@" + testProject + ".iam.gserviceaccount.com"
	cpAccount   = "serviceAccount:burla-control@" + testProject + ".iam.gserviceaccount.com"
)

// fakeGcloud is a stand-in for gcloud, for a project where everything the
// scripts look for exists but the control plane's VM. It logs each call to
// calls, keeps the IAM bindings it is given in bindings (resource,role,member:
// a bucket's name, or "project") and answers get-iam-policy from them, and
// copies the files of --metadata-from-file to metadata-KEY.
const fakeGcloud = `#!/bin/bash
set -euo pipefail
d=$FAKE_GCLOUD_DIR
printf '%s\n' "$*" >>"$d/calls"
member="" role=""
for a in "$@"; do
	case "$a" in
	--member=*) member=${a#--member=} ;;
	--role=*) role=${a#--role=} ;;
	--metadata-from-file=*)
		IFS=, read -ra files <<<"${a#--metadata-from-file=}"
		for f in "${files[@]}"; do cp "${f#*=}" "$d/metadata-${f%%=*}"; done ;;
	esac
done
case "$*" in
"firestore databases describe "*) echo FIRESTORE_NATIVE ;;
"storage buckets add-iam-policy-binding "*) printf '%s,%s,%s\n' "${4#gs://}" "$role" "$member" >>"$d/bindings" ;;
"projects add-iam-policy-binding "*) printf 'project,%s,%s\n' "$role" "$member" >>"$d/bindings" ;;
"storage buckets get-iam-policy "*) sed -n "s|^${4#gs://},||p" "$d/bindings" ;;
"projects get-iam-policy "*) sed -n 's|^project,||p' "$d/bindings" ;;
"compute instances describe "*) exit 1 ;;
esac
`

// deployRun is a run of a deploy/gcp script.
type deployRun struct {
	err            error
	stdout, stderr string
	dir            string // fakeGcloud's
}

// bindings are the IAM bindings the project has after the run, as
// resource,role,member.
func (r deployRun) bindings(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "bindings"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// runDeployScript runs deploy/gcp's script with env and args, with fakeGcloud for
// gcloud; bindings are the project's before the run.
func runDeployScript(t *testing.T, script string, env []string, bindings []string, args ...string) deployRun {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "gcloud"), []byte(fakeGcloud), 0o755); err != nil {
		t.Fatal(err)
	}
	var seed string
	for _, b := range bindings {
		seed += b + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "bindings"), []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bash, append([]string{filepath.Join(deployDir, script)}, args...)...)
	cmd.Env = append(os.Environ(), "FAKE_GCLOUD_DIR="+dir, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "PROJECT="+testProject)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return deployRun{err: cmd.Run(), stdout: stdout.String(), stderr: stderr.String(), dir: dir}
}

// readOnlyRoles are the roles that let an account read a bucket's objects and
// nothing more.
var readOnlyRoles = []string{"roles/storage.objectViewer", "roles/storage.legacyObjectReader", "roles/storage.legacyBucketReader"}

// setup.sh keeps the binary in a bucket of its own, which the node VMs' account
// (and the control plane's, which runs tenants' programs to learn their
// functions) may read and not write: a job that takes its node's token cannot
// plant code that VMs run at boot. The data bucket stays theirs to write.
func TestSetupGivesNoWriteOnTheBinary(t *testing.T) {
	r := runDeployScript(t, "setup.sh", nil, nil)
	if r.err != nil {
		t.Fatalf("setup.sh: %v\n%s", r.err, r.stderr)
	}
	m := regexp.MustCompile(`--gce-binary-url '?gs://([^/']+)/`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("setup.sh names no gs:// binary URL:\n%s", r.stdout)
	}
	binBucket, dataBucket := m[1], testProject+"-burla"
	if binBucket == dataBucket {
		t.Errorf("the binary is in the data bucket gs://%s, which the VMs write", dataBucket)
	}
	for _, account := range []string{nodeAccount, cpAccount} {
		var read bool
		for _, b := range r.bindings(t) {
			resource, rest, _ := strings.Cut(b, ",")
			role, member, _ := strings.Cut(rest, ",")
			if member != account {
				continue
			}
			switch {
			case resource == binBucket && slices.Contains(readOnlyRoles, role):
				read = true
			case resource == binBucket:
				t.Errorf("%s has %s on gs://%s, the binary's bucket: want read access only", account, role, binBucket)
			case resource == "project" && (strings.HasPrefix(role, "roles/storage.") || role == "roles/editor" || role == "roles/owner"):
				t.Errorf("%s has %s on the project, which writes every bucket", account, role)
			}
		}
		if !read {
			t.Errorf("%s cannot read gs://%s, the binary's bucket; bindings %q", account, binBucket, r.bindings(t))
		}
		if !slices.Contains(r.bindings(t), dataBucket+",roles/storage.objectAdmin,"+account) {
			t.Errorf("%s cannot write gs://%s, the store's blobs", account, dataBucket)
		}
	}
}

// Roles are only ever added by setup.sh, so a write role on the binary's bucket
// granted before (by hand, or by an older setup.sh that kept the binary in the
// data bucket, were BIN_BUCKET set to it) would stay: setup.sh stops and says so.
func TestSetupStopsOnAWriteRoleOnTheBinary(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      []string
		bindings []string
		want     string
	}{
		{"on the bucket", nil, []string{testProject + "-burla-bin,roles/storage.objectAdmin," + nodeAccount},
			"burla-node@" + testProject + ".iam.gserviceaccount.com: roles/storage.objectAdmin on gs://" + testProject + "-burla-bin"},
		{"on the project", nil, []string{"project,roles/editor," + cpAccount},
			"burla-control@" + testProject + ".iam.gserviceaccount.com: roles/editor on project " + testProject},
		{"the data bucket", []string{"BIN_BUCKET=" + testProject + "-burla"}, nil, "the binary needs a bucket the VMs only read"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runDeployScript(t, "setup.sh", tt.env, tt.bindings)
			if r.err == nil || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("setup.sh: %v; want a refusal saying %q:\n%s", r.err, tt.want, r.stderr)
			}
			if strings.Contains(r.stdout, "Done.") {
				t.Errorf("setup.sh says it is done:\n%s", r.stdout)
			}
		})
	}
}

// The control plane's VM is given the binary's digest with its settings, and its
// startup script, run with its downloads stubbed, refuses a binary of another
// digest: the control plane does not start, and the serial console says why.
func TestControlPlaneVMChecksTheBinary(t *testing.T) {
	r := runDeployScript(t, "control-plane.sh", []string{"TEMPORAL_ADDRESS=10.128.0.5:7233", "BINARY_SHA256=" + testBinarySHA256}, nil)
	if r.err != nil {
		t.Fatalf("control-plane.sh: %v\n%s", r.err, r.stderr)
	}
	script, err := os.ReadFile(filepath.Join(r.dir, "metadata-startup-script"))
	if err != nil {
		t.Fatalf("the VM's startup script: %v", err)
	}
	config, err := os.ReadFile(filepath.Join(r.dir, "metadata-burla-config"))
	if err != nil {
		t.Fatalf("the VM's settings: %v", err)
	}
	for _, want := range []string{
		"GCE_BINARY_SHA256=" + testBinarySHA256 + "\n",
		"GCE_BINARY_URL=gs://" + testProject + "-burla-bin/burla-" + testBinarySHA256 + "\n",
	} {
		if !strings.Contains(string(config), want) {
			t.Errorf("settings lack %q:\n%s", want, config)
		}
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", "-c", string(script)).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v: %s", err, out)
		}
	}
	const unit = "burla-control-plane.service"

	run := runStartupScript(t, string(script), testBinary, string(config))
	if run.err != nil || !slices.Contains(run.calls, "systemctl restart "+unit) {
		t.Fatalf("startup script: %v, calls %q; want the control plane started\n%s", run.err, run.calls, run.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(run.root, "opt/burla/burla")); err != nil || !bytes.Equal(got, testBinary) {
		t.Errorf("installed binary %q, %v; want the one fetched", got, err)
	}
	// The programs the control plane inspects run there: the VM closes the
	// metadata server to all but root, with the nodes' ruleset, before anything is
	// fetched, and the control plane runs as root (to run them as other users)
	// with only the capabilities that takes.
	if run.ruleset != metadataRuleset {
		t.Errorf("the control plane's VM loaded the ruleset %q; want the nodes' (metadata-block.nft)", run.ruleset)
	}
	if len(run.calls) == 0 || !strings.HasPrefix(run.calls[0], "nft ") {
		t.Errorf("calls %q; want nft first", run.calls)
	}
	unitFile, err := os.ReadFile(filepath.Join(run.root, "etc/systemd/system", unit))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL\n", "ProtectSystem=strict\n", "NoNewPrivileges=yes\n"} {
		if !strings.Contains(string(unitFile), want) {
			t.Errorf("the control plane's unit lacks %q:\n%s", want, unitFile)
		}
	}
	if strings.Contains(string(unitFile), "DynamicUser") {
		t.Errorf("the control plane runs as a user of systemd's, as whom its inspected programs would run:\n%s", unitFile)
	}

	tampered := append(slices.Clip(testBinary), "# and something else\n"...)
	run = runStartupScript(t, string(script), tampered, string(config))
	if run.err == nil || slices.ContainsFunc(run.calls, func(c string) bool { return strings.HasPrefix(c, "systemctl") }) {
		t.Errorf("startup script with a tampered binary: %v, calls %q; want it to fail before systemd is told anything", run.err, run.calls)
	}
	for _, f := range []string{"opt/burla/burla", "opt/burla/burla.new"} {
		if _, err := os.Stat(filepath.Join(run.root, f)); err == nil {
			t.Errorf("/%s exists: the tampered binary was kept", f)
		}
	}
	want := fmt.Sprintf("its SHA-256 is %x, not %s, so the control plane does not start", sha256.Sum256(tampered), testBinarySHA256)
	if !strings.Contains(run.console, want) || !strings.Contains(run.stderr, want) {
		t.Errorf("serial console %q, stderr %q; want both to say %q", run.console, run.stderr, want)
	}
}

// control-plane.sh makes no VM without the digest of the binary it is to run.
func TestControlPlaneScriptWantsTheDigest(t *testing.T) {
	for _, sum := range []string{"", "latest", strings.ToUpper(testBinarySHA256)} {
		r := runDeployScript(t, "control-plane.sh", []string{"TEMPORAL_ADDRESS=10.128.0.5:7233", "BINARY_SHA256=" + sum}, nil)
		if r.err == nil || !strings.Contains(r.stderr, "BINARY_SHA256") {
			t.Errorf("BINARY_SHA256=%q: %v; want a refusal naming BINARY_SHA256:\n%s", sum, r.err, r.stderr)
		}
		if calls, _ := os.ReadFile(filepath.Join(r.dir, "calls")); strings.Contains(string(calls), "instances create") {
			t.Errorf("BINARY_SHA256=%q: the VM was made", sum)
		}
	}
}
