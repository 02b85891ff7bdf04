package temporalserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/common/primitives"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/temporalconn"
	"github.com/burla-temporal/burla/tlsdir"
)

// operatorPKI is what an operator brings to a frontend that serves TLS: a CA of
// their own, the frontend's certificate and a client's, as the PEM files that
// clients name through package temporalconn.
type operatorPKI struct {
	caPEM                 string // the CA certificate itself, as BURLA_TEMPORAL_TLS_CA may hold it
	pool                  *x509.CertPool
	server                tls.Certificate
	clientCert, clientKey string // files
}

func newOperatorPKI(t *testing.T) operatorPKI {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "operator CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := tlsdir.SignCert(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := operatorPKI{caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	issue := func(name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := tlsdir.SignCert(tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	if p.server, err = tls.X509KeyPair(issue("frontend", x509.ExtKeyUsageServerAuth)); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := issue("client", x509.ExtKeyUsageClientAuth)
	dir := t.TempDir()
	p.clientCert, p.clientKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(p.clientCert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.clientKey, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dialSecurity dials s's frontend as a program configured by sec would.
func dialSecurity(ctx context.Context, s *Server, sec temporalconn.Security) (client.Client, error) {
	o := client.Options{HostPort: s.FrontendHostPort(), Namespace: s.Namespace(), Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))}
	if err := sec.Apply(&o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return client.DialContext(ctx, o)
}

// runEcho runs echoWorkflow through c, with a worker of c's, and waits until the
// server's worker service polls its task queue: it reaches the frontend as a
// client of its own, through the public frontend when keys are off.
func runEcho(ctx context.Context, t *testing.T, c client.Client, s *Server) {
	t.Helper()
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
}

// TestTLSFrontend starts the server with an operator's certificate, with keys
// off and on and with mutual TLS, and dials it as programs do, through package
// temporalconn: a client that trusts the operator's CA (and has a key, and a
// certificate, where they are asked for) runs a workflow; one in plaintext, one
// that does not trust the CA, one without the key and one without a certificate
// are turned away. The worker service, which reaches the frontend on its own,
// gets through too.
func TestTLSFrontend(t *testing.T) {
	pki := newOperatorPKI(t)
	for _, tc := range []struct {
		name         string
		keys, mutual bool
	}{{"TLS", false, false}, {"TLS and keys", true, false}, {"mutual TLS", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := Config{Logger: testLogger(), TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}}}
			good := temporalconn.Security{CACert: pki.caPEM}
			if tc.keys {
				cfg.Keys = auth.NewMemory()
				key, err := cfg.Keys.AddEphemeral(auth.RoleControl, "")
				if err != nil {
					t.Fatal(err)
				}
				good.Key = key
			}
			if tc.mutual {
				cfg.TLS.ClientAuth, cfg.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pki.pool
				good.ClientCert, good.ClientKey = pki.clientCert, pki.clientKey
			}
			s, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Stop() }()
			if s.UIAddress() != "" {
				t.Errorf("the Web UI serves plain HTTP at %s beside a TLS frontend", s.UIAddress())
			}

			plaintext := temporalconn.Security{Key: good.Key}
			untrusting := good
			untrusting.CACert, untrusting.TLS = "", true
			for name, sec := range map[string]temporalconn.Security{"in plaintext": plaintext, "not trusting the CA": untrusting} {
				if c, err := dialSecurity(ctx, s, sec); err == nil {
					c.Close()
					t.Errorf("a client %s got in", name)
				}
			}
			if tc.keys {
				keyless := good
				keyless.Key = ""
				c, err := dialSecurity(ctx, s, keyless)
				if err == nil {
					c.Close()
				}
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("a client over TLS without a key: %v; want Unauthenticated", err)
				}
			}
			if tc.mutual {
				certless := good
				certless.ClientCert, certless.ClientKey = "", ""
				if c, err := dialSecurity(ctx, s, certless); err == nil {
					c.Close()
					t.Error("a client without a certificate got in where the frontend asks for one")
				}
			}

			c, err := dialSecurity(ctx, s, good)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			runEcho(ctx, t, c, s)
		})
	}
}

func TestTLSWithoutCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := Start(ctx, Config{UIPort: -1, TLS: &tls.Config{}}); err == nil {
		_ = s.Stop()
		t.Fatal("started with a TLS configuration that has no certificate")
	}
}
