// Package compose brings up deploy/compose/server.yml for real, as the README's
// "Run a real cluster" does on the server machine: the burla image built from a
// static burla binary, Temporal and NATS with API keys and TLS, a control plane
// whose nodes are containers on the local Docker engine, and the one-shot `burla
// cluster up`; then it runs jobs on that cluster from outside it, as a tenant's
// laptop would. The test binary is also the program the nodes run (FROM scratch),
// so run it with CGO_ENABLED=0.
package compose

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/execfile"
	"github.com/burla-temporal/burla/provider/docker"
	burla "github.com/burla-temporal/burla/sdk"
	"github.com/burla-temporal/burla/store/storeurl"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/tests/clustertest"
	"github.com/burla-temporal/burla/tlsdir"
)

var cube = burla.Func("cube", func(ctx context.Context, x int) (int, error) {
	fmt.Println("cubing", x)
	return x * x * x, nil
})

// probe says whether a call on a node can open a TCP connection to addr.
var probe = burla.Func("probe", func(ctx context.Context, addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "refused", nil
	}
	c.Close()
	return "connected", nil
})

// dockerGateway is the address of this machine on Docker's default bridge: not
// loopback, so the provider gives nodes a network of their own, and not
// published beyond this machine.
func dockerGateway(t *testing.T) string {
	t.Helper()
	ifc, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("docker's bridge: %v", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatalf("docker's bridge docker0 has no IPv4 address: %v", addrs)
	return ""
}

func TestMain(m *testing.M) {
	burla.Main()
	os.Exit(m.Run())
}

// composeCommand returns the Compose command that is installed: docker-compose
// (Debian's 1.29), or the compose plugin of the docker CLI.
func composeCommand() []string {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return nil
}

// skipUnlessDocker skips, loudly, when there is no Compose or no Docker engine:
// `make test` installs and starts them, so a skip there is a failure to look into.
func skipUnlessDocker(t *testing.T) []string {
	t.Helper()
	skip := func(why string) {
		fmt.Fprintf(os.Stderr, "\n*** SKIPPING THE COMPOSE TEST: %s ***\n\n", why)
		t.Skip(why)
	}
	compose := composeCommand()
	if compose == nil {
		skip("neither docker-compose nor `docker compose` is installed (apt-get install -y docker-compose)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		skip(fmt.Sprintf("no Docker engine answers (%v: %s)", err, bytes.TrimSpace(out)))
	}
	return compose
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// run runs a command and returns its combined output, failing the test if it fails.
func run(t *testing.T, ctx context.Context, env []string, argv ...string) string {
	t.Helper()
	out, err := output(ctx, env, argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func output(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestServerCompose(t *testing.T) {
	compose := skipUnlessDocker(t)
	if exe, _ := os.Executable(); isDynamic(exe) {
		t.Fatal("the test binary is dynamically linked and cannot run on nodes FROM scratch; run with CGO_ENABLED=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "compose")

	// make build, and the image from the binary alone.
	start := time.Now()
	binDir := t.TempDir()
	if _, err := clustertest.Build(binDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("built burla in %v", time.Since(start).Round(time.Millisecond))
	project := fmt.Sprintf("burlacompose%d", rand.N(1_000_000_000))
	img := "burla-compose-test:" + project
	run(t, ctx, os.Environ(), "docker", "build", "-q", "-t", img, "-f", filepath.Join(dir, "Dockerfile"), binDir)
	t.Cleanup(func() { output(context.Background(), os.Environ(), "docker", "rmi", img) })

	// The certificates and keys, as the README makes them with burla certs make
	// and burla keys add.
	secrets := t.TempDir()
	tlsDir, keysDir := filepath.Join(secrets, "tls"), filepath.Join(secrets, "keys")
	// The servers publish their ports on, and nodes reach them at, this machine's
	// address on Docker's bridge.
	host := dockerGateway(t)
	if err := tlsdir.Make(tlsDir, []string{"temporal", "nats", host}, nil); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(tlsDir, tlsdir.CA)
	keysFile := filepath.Join(keysDir, "keys.json")
	var controlKey, nodeKey, tenantKey string
	for _, k := range []struct {
		key    *string
		role   auth.Role
		tenant string
	}{{&controlKey, auth.RoleControl, ""}, {&nodeKey, auth.RoleNode, ""}, {&tenantKey, auth.RoleTenant, "acme"}} {
		if *k.key, err = auth.Add(keysFile, k.role, k.tenant); err != nil {
			t.Fatal(err)
		}
	}

	temporalPort, natsPort, dashPort := freePort(t), freePort(t), freePort(t)
	env := append(os.Environ(),
		"BURLA_IMAGE="+img,
		"BURLA_BIND="+host,
		"BURLA_TLS_DIR="+tlsDir,
		"BURLA_KEYS_DIR="+keysDir,
		"BURLA_CONTROL_KEY="+controlKey,
		"BURLA_NODE_KEY="+nodeKey,
		"BURLA_TEMPORAL_PORT="+temporalPort,
		"BURLA_DASHBOARD_PORT="+dashPort,
		"BURLA_NATS_PORT="+natsPort,
		"BURLA_METRICS_PORT="+freePort(t),
		"BURLA_SERVER_ADDR="+host,
		"BURLA_DOCKER_HOSTS=unix:///var/run/docker.sock",
		"BURLA_INSTANCE="+project,
		"BURLA_NODES=2",
		"BURLA_CPUS=1",
		"BURLA_MAX_NODES=2",
	)
	dc := func(args ...string) []string {
		return append(append(compose[:len(compose):len(compose)], "-p", project, "-f", filepath.Join(dir, "server.yml")), args...)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := output(ctx, env, dc("logs", "--no-color")...)
			t.Logf("compose logs:\n%s", logs)
		}
		if out, err := output(ctx, env, dc("down", "-v")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		// The node containers are the control plane's, not Compose's.
		ids, _ := output(ctx, env, "docker", "ps", "-aq", "--filter", "label=burla.instance="+project)
		if ids := strings.Fields(ids); len(ids) > 0 {
			output(ctx, env, append([]string{"docker", "rm", "-f"}, ids...)...)
		}
		// And so is their network, which outlives a cluster of its instance.
		output(ctx, env, "docker", "network", "rm", docker.NetworkName+"-"+project)
	})

	start = time.Now()
	run(t, ctx, env, dc("up", "-d")...)
	waitClusterUp(t, ctx, project)
	t.Logf("compose up to 2 standby nodes ready in %v", time.Since(start).Round(time.Millisecond))
	if nodes := nodeContainers(t, ctx, project); len(nodes) != 2 {
		t.Fatalf("node containers %v; want 2", nodes)
	}
	// The dashboard serves HTTPS only, with the servers' certificate, and asks
	// for a key.
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := http.Get("http://" + host + ":" + dashPort + "/?key=" + tenantKey); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("dashboard in plaintext: %s; want it refused", resp.Status)
		}
	}
	for key, want := range map[string]int{"": http.StatusUnauthorized, tenantKey: http.StatusOK} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+":"+dashPort+"/", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("dashboard: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("dashboard with key %q: %s; want %d", key, resp.Status, want)
		}
	}

	// Temporal and NATS serve TLS only, to callers with a key.
	temporalAddr, storeURL := net.JoinHostPort(host, temporalPort), storeurl.WithCA("tls://"+net.JoinHostPort(host, natsPort), ca)
	for name, cfg := range map[string]burla.Config{
		"in plaintext":       {StoreURL: "nats://" + net.JoinHostPort(host, natsPort), TemporalSecurity: temporalconn.Security{TLS: false}, APIKey: tenantKey},
		"without the CA":     {StoreURL: "tls://" + net.JoinHostPort(host, natsPort), TemporalSecurity: temporalconn.Security{TLS: true}, APIKey: tenantKey},
		"without an API key": {StoreURL: storeURL, TemporalSecurity: temporalconn.Security{CACert: ca}},
	} {
		cfg.TemporalAddress, cfg.Namespace = temporalAddr, "default"
		if c, err := burla.Dial(ctx, cfg); err == nil {
			c.Close()
			t.Errorf("a program %s reached the cluster", name)
		}
	}

	// A job from outside the cluster, as from a tenant's laptop: the SDK ships
	// this program.
	c, err := burla.Dial(ctx, burla.Config{TemporalAddress: temporalAddr, Namespace: "default", StoreURL: storeURL,
		TemporalSecurity: temporalconn.Security{CACert: ca}, APIKey: tenantKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := make([]int, 200)
	for i := range in {
		in[i] = i
	}
	var lines int
	start = time.Now()
	out, err := burla.RemoteParallelMap(ctx, cube, in, burla.OnCluster(c), burla.Spinner(false),
		burla.OnLog(func(l burla.LogLine) {
			if l.Text == "cubing "+strconv.Itoa(l.Index) {
				lines++
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != i*i*i {
			t.Fatalf("output %d = %d; want %d", i, o, i*i*i)
		}
	}
	if lines != len(in) {
		t.Errorf("%d lines attributed to their inputs; want %d", lines, len(in))
	}
	t.Logf("a %d-input job in %v", len(in), time.Since(start).Round(time.Millisecond))

	// A node is in a network namespace of its own: a call reaches the servers at
	// the address the cluster gave its nodes, but nothing on the machine's
	// loopback (a service of this test's, listening there).
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	targets := []string{temporalAddr, local.Addr().String()}
	reached, err := burla.RemoteParallelMap(ctx, probe, targets, burla.OnCluster(c), burla.Spinner(false), burla.OnLog(func(burla.LogLine) {}))
	if err != nil {
		t.Fatal(err)
	}
	if reached[0] != "connected" || reached[1] != "refused" {
		t.Errorf("a call on a node reached Temporal at %s: %s, and the machine's loopback %s: %s; want connected and refused",
			targets[0], reached[0], targets[1], reached[1])
	}

	// The README's quickstart, pointed at the cluster by the environment.
	qs := filepath.Join(binDir, "quickstart")
	build := exec.CommandContext(ctx, "go", "build", "-o", qs, "./examples/quickstart")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build quickstart: %v\n%s", err, out)
	}
	got := run(t, ctx, append(os.Environ(), "BURLA_TEMPORAL_ADDRESS="+temporalAddr, "BURLA_STORE_URL="+storeURL,
		temporalconn.EnvCACert+"="+ca, auth.EnvKey+"="+tenantKey), qs)
	if !strings.HasSuffix(strings.TrimSpace(got), "[2 4 6]") {
		t.Errorf("quickstart printed %q; want it to end with [2 4 6]", got)
	}

	// Stop as the README says: the cluster deletes its nodes, then Compose stops.
	run(t, ctx, env, dc("run", "--rm", "cluster-up", "cluster", "down", "--temporal=temporal:7233")...)
	if nodes := nodeContainers(t, ctx, project); len(nodes) != 0 {
		t.Errorf("node containers after burla cluster down: %v; want none", nodes)
	}
}

// waitClusterUp waits until the one-shot cluster-up service has exited 0, which it
// does once the standby nodes are ready.
func waitClusterUp(t *testing.T, ctx context.Context, project string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		// By Compose's labels, which both Compose versions set.
		id := strings.TrimSpace(run(t, ctx, os.Environ(), "docker", "ps", "-aq",
			"--filter", "label=com.docker.compose.project="+project, "--filter", "label=com.docker.compose.service=cluster-up"))
		if id != "" && !strings.Contains(id, "\n") {
			st, _ := output(ctx, os.Environ(), "docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", id)
			f := strings.Fields(st)
			switch {
			case len(f) == 3 && f[0] == "exited" && f[1] == "0":
				return
			case len(f) == 3 && f[0] == "exited" && f[2] == "10":
				t.Fatalf("cluster-up failed 11 times: %s", st)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster-up has not finished after 3 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func nodeContainers(t *testing.T, ctx context.Context, project string) []string {
	t.Helper()
	return strings.Fields(run(t, ctx, os.Environ(), "docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "label=burla.instance="+project))
}

// isDynamic reports whether path cannot run FROM scratch (or is no executable at all).
func isDynamic(path string) bool {
	dyn, err := execfile.Dynamic(path)
	return err != nil || dyn
}
