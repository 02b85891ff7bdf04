package temporalserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/api/historyservice/v1"
	"go.temporal.io/server/common/primitives"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/burla-temporal/burla/auth"
)

// TestInternalPortsRefuseStrangers plays a tenant whose code runs on the
// cluster's machine: it finds the ports the server listens on the way such code
// would, from /proc/net/tcp, and tries each one but the public frontend with the
// Temporal Go client (no key) and with raw history service calls, each in
// plaintext, over TLS without a client certificate, and over TLS with a
// certificate of its own making. Every attempt must fail at the transport,
// before any of the server's handlers sees the call; with the server's own
// certificate the same calls get through, which shows that the right ports were
// tried.
func TestInternalPortsRefuseStrangers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before := ownListeners(t)
	keys := auth.NewMemory()
	key, err := keys.AddEphemeral(auth.RoleControl, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, Config{Keys: keys, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	var targets []string
	for _, addr := range ownListeners(t) {
		if !slices.Contains(before, addr) && !sameAddr(addr, s.FrontendHostPort()) {
			targets = append(targets, addr)
		}
	}
	// history, matching, worker and the internal frontend at least: a test that
	// found no port would prove nothing.
	if len(targets) < 4 {
		t.Fatalf("found %d listeners besides the frontend %s (%v), want at least 4", len(targets), s.FrontendHostPort(), targets)
	}
	t.Logf("internal listeners: %v", targets)

	// Something to find: a workflow started by the control plane.
	c, err := client.DialContext(ctx, client.Options{
		HostPort:          s.FrontendHostPort(),
		Namespace:         s.Namespace(),
		Credentials:       client.NewAPIKeyStaticCredentials(key),
		ConnectionOptions: client.ConnectionOptions{TLSDisabled: true},
		Logger:            sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "secret", TaskQueue: taskQueue}, "Secret"); err != nil {
		t.Fatal(err)
	}

	noCert := &tls.Config{InsecureSkipVerify: true} // the attacker trusts any server
	// A forger copies everything but our CA's key: same names, same shape.
	forged, err := newInternodeTLS()
	if err != nil {
		t.Fatal(err)
	}
	forgedCert := forged.client.Clone()
	forgedCert.RootCAs, forgedCert.InsecureSkipVerify = nil, true
	for _, addr := range targets {
		for _, tc := range []struct {
			name string
			tls  *tls.Config
		}{
			{"plaintext", nil},
			{"TLS without a client certificate", noCert},
			{"TLS with a client certificate from another CA", forgedCert},
		} {
			if o, err := probeFrontend(ctx, addr, s.Namespace(), tc.tls); o != refused {
				t.Errorf("%s, %s, Temporal client: %v: %v", addr, tc.name, o, err)
			}
			if o, err := probeHistory(ctx, addr, tc.tls); o != refused {
				t.Errorf("%s, %s, history client: %v: %v", addr, tc.name, o, err)
			}
		}
	}

	// The public frontend is for everyone, but without a key the guard refuses.
	if o, err := probeFrontend(ctx, s.FrontendHostPort(), s.Namespace(), nil); o != reached || serviceerror.ToStatus(err).Code() != codes.Unauthenticated {
		t.Errorf("public frontend without a key: %v: %v", o, err)
	}

	// The control: with the server's certificate the internal frontend and the
	// history service answer.
	var frontends, histories int
	for _, addr := range targets {
		if o, _ := probeFrontend(ctx, addr, s.Namespace(), s.dialTLS); o == answered {
			frontends++
		}
		if o, _ := probeHistory(ctx, addr, s.dialTLS); o == answered {
			histories++
		}
	}
	if frontends != 1 || histories != 1 {
		t.Errorf("with the server's certificate, %d internal frontends and %d history services answered; want 1 and 1", frontends, histories)
	}
}

// TestWorkflowsRunWithKeysOnAndOff runs a workflow end to end through the
// public frontend, with keys and without, and checks that the server's worker
// service got through to the frontend it uses (the internal one, over mutual
// TLS, when keys are on): it polls the namespace's system task queue.
func TestWorkflowsRunWithKeysOnAndOff(t *testing.T) {
	for _, keys := range []bool{false, true} {
		t.Run("keys="+strconv.FormatBool(keys), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := Config{UIPort: -1, Logger: testLogger()}
			opts := client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))}
			if keys {
				cfg.Keys = auth.NewMemory()
				key, err := cfg.Keys.AddEphemeral(auth.RoleControl, "")
				if err != nil {
					t.Fatal(err)
				}
				opts.Credentials = client.NewAPIKeyStaticCredentials(key)
				opts.ConnectionOptions.TLSDisabled = true
			}
			s, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Stop() }()
			opts.HostPort, opts.Namespace = s.FrontendHostPort(), s.Namespace()
			c, err := client.DialContext(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w := worker.New(c, taskQueue, worker.Options{})
			w.RegisterWorkflow(echoWorkflow)
			w.RegisterActivity(echoActivity)
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "echo", TaskQueue: taskQueue}, echoWorkflow, 42)
			if err != nil {
				t.Fatal(err)
			}
			var out int
			if err := run.Get(ctx, &out); err != nil || out != 42 {
				t.Fatalf("workflow: %d, %v", out, err)
			}

			err = retry(ctx, func() error {
				resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
					Namespace:     s.Namespace(),
					TaskQueue:     &taskqueuepb.TaskQueue{Name: primitives.PerNSWorkerTaskQueue},
					TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
				})
				if err == nil && len(resp.GetPollers()) == 0 {
					err = errors.New("no poller")
				}
				return err
			})
			if err != nil {
				t.Fatalf("the worker service does not poll %s: %v", primitives.PerNSWorkerTaskQueue, err)
			}
		})
	}
}

// TestGuardTrustsOnlyOurCertificate checks that the guard lets a call through
// without a key only when it came in on the internal frontend's port from a
// peer that presented the server's client certificate.
func TestGuardTrustsOnlyOurCertificate(t *testing.T) {
	ours, err := newInternodeTLS()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := newInternodeTLS()
	if err != nil {
		t.Fatal(err)
	}
	g := &guard{keys: auth.NewMemory(), internalPort: "7001", internode: ours, log: slog.New(slog.DiscardHandler)}
	local := func(port int) net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }
	tlsInfo := func(it *internodeTLS, verified bool) credentials.AuthInfo {
		leaf := it.client.Certificates[0].Leaf
		st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
		if verified {
			st.VerifiedChains = [][]*x509.Certificate{{leaf}}
		}
		return credentials.TLSInfo{State: st}
	}
	for _, c := range []struct {
		name string
		peer *peer.Peer
		want bool
	}{
		{"our certificate on the internal port", &peer.Peer{LocalAddr: local(7001), AuthInfo: tlsInfo(ours, true)}, true},
		{"plaintext on the internal port", &peer.Peer{LocalAddr: local(7001)}, false},
		{"another CA's certificate", &peer.Peer{LocalAddr: local(7001), AuthInfo: tlsInfo(theirs, true)}, false},
		{"our certificate, unverified", &peer.Peer{LocalAddr: local(7001), AuthInfo: tlsInfo(ours, false)}, false},
		{"our certificate on another port", &peer.Peer{LocalAddr: local(7233), AuthInfo: tlsInfo(ours, true)}, false},
	} {
		if got := g.internal(peer.NewContext(context.Background(), c.peer)); got != c.want {
			t.Errorf("%s: internal = %v, want %v", c.name, got, c.want)
		}
	}
}

// outcome is what a call to a port came to.
type outcome int

const (
	refused  outcome = iota // the connection failed: no server saw the call
	reached                 // a server replied with an error (Unimplemented: not that service here)
	answered                // the call succeeded
)

func (o outcome) String() string { return [...]string{"refused", "reached a server", "answered"}[o] }

// classify tells a failure to connect (the TLS handshake refused us, or never
// finished) from a reply.
func classify(err error) outcome {
	if err == nil {
		return answered
	}
	switch serviceerror.ToStatus(err).Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return refused
	}
	return reached
}

// probeFrontend calls the frontend API on addr with the Temporal Go client, as
// ListWorkflowExecutions then DescribeNamespace, and says how far it got.
func probeFrontend(ctx context.Context, addr, ns string, tlsCfg *tls.Config) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Lazy, so that each call's error comes back as the server's status; Dial
	// would flatten it into a string.
	c, err := client.NewLazyClient(client.Options{
		HostPort:          addr,
		Namespace:         ns,
		ConnectionOptions: client.ConnectionOptions{TLS: tlsCfg},
		Logger:            sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		return refused, err
	}
	defer c.Close()
	list, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: ns})
	if err != nil {
		return classify(err), fmt.Errorf("ListWorkflowExecutions: %w", err)
	}
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	if err != nil {
		return classify(err), fmt.Errorf("ListWorkflowExecutions listed %d workflows; DescribeNamespace: %w", len(list.GetExecutions()), err)
	}
	return answered, fmt.Errorf("ListWorkflowExecutions listed %d workflows, DescribeNamespace answered", len(list.GetExecutions()))
}

// probeHistory calls the history service on addr with a raw gRPC client and
// says how far it got.
func probeHistory(ctx context.Context, addr string, tlsCfg *tls.Config) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return refused, fmt.Errorf("grpc client: %w", err)
	}
	defer conn.Close()
	resp, err := historyservice.NewHistoryServiceClient(conn).DescribeHistoryHost(ctx, &historyservice.DescribeHistoryHostRequest{})
	if err != nil {
		return classify(err), fmt.Errorf("DescribeHistoryHost: %w", err)
	}
	return answered, fmt.Errorf("DescribeHistoryHost answered: %d shards at %s", resp.GetShardsNumber(), resp.GetAddress())
}

// ownListeners returns the addresses (to dial) of the TCP sockets this process
// listens on, read the way any process on the machine can: from /proc/net/tcp
// and tcp6, here narrowed to the sockets among this process's file descriptors
// so that other programs on the machine do not count.
func ownListeners(t *testing.T) []string {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var addrs []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			const listen = "0A"
			if len(fields) < 10 || fields[3] != listen || !mine[fields[9]] {
				continue
			}
			addr, err := procAddr(fields[1])
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			addrs = append(addrs, addr)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return addrs
}

// procAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"; an
// unspecified address becomes the loopback of its family.
func procAddr(s string) (string, error) {
	h, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", fmt.Errorf("bad address %q", s)
	}
	// The kernel prints the address as 32-bit words in host (little-endian) order.
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	switch {
	case ip.IsUnspecified() && len(ip) == 4:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), nil
}

func sameAddr(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	return pa == pb && net.ParseIP(ha).Equal(net.ParseIP(hb))
}
