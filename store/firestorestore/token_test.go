package firestorestore_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/burla-temporal/burla/blob/gcsblob"
	"github.com/burla-temporal/burla/store/firestorestore"
)

// A node's workers reach the store with the tokens their agent hands them
// (storeurl.Credentials.Token), as the metadata server is closed to them: both
// Firestore's requests and Cloud Storage's carry the latest token, and nothing
// else, and a failed token fails the request rather than falling back to
// Application Default Credentials.
func TestTokenOptionAuthorizesEveryRequest(t *testing.T) {
	t.Setenv("FIRESTORE_EMULATOR_HOST", "")
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent") // Application Default Credentials would fail
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	// The first token is near its end (the clients may cache a token until then),
	// as it is when the agent hands over the next.
	current, expiry := "tok-1", time.Now().Add(5*time.Second)
	token := func(context.Context) (string, time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		return current, expiry, nil
	}
	var seen []string
	saw := func(auth string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, auth)
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}

	// Cloud Storage's JSON API, over HTTP.
	gcs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		saw(r.Header.Get("Authorization"))
		http.Error(w, `{"error":{"code":404,"message":"No such object"}}`, http.StatusNotFound)
	}))
	defer gcs.Close()
	blobs, err := gcsblob.Dial(ctx, "bucket", "p/", option.WithEndpoint(gcs.URL+"/storage/v1/"), firestorestore.TokenOption(token))
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	if _, err := blobs.Has(ctx, "k"); err != nil {
		t.Fatalf("Has: %v", err)
	}
	if got := last(); got != "Bearer tok-1" {
		t.Fatalf("Cloud Storage got Authorization %q, want the agent's token", got)
	}

	// Firestore's gRPC API, over TLS (a bearer token never goes in the clear).
	rpc := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(stream.Context())
		saw(strings.Join(md.Get("authorization"), ","))
		return status.Error(codes.PermissionDenied, "test server")
	}))
	fsrv := httptest.NewUnstartedServer(rpc)
	fsrv.EnableHTTP2 = true
	fsrv.StartTLS()
	defer fsrv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(fsrv.Certificate())
	st, err := firestorestore.Dial(ctx, firestorestore.Config{Project: "p", Blobs: blobs},
		option.WithEndpoint(fsrv.Listener.Addr().String()),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(roots, ""))),
		firestorestore.TokenOption(token))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ListJobs(ctx); err == nil || !strings.Contains(err.Error(), "test server") {
		t.Fatalf("ListJobs reached no test server: %v", err)
	}
	if got := last(); got != "Bearer tok-1" {
		t.Fatalf("Firestore got authorization %q, want the agent's token", got)
	}

	// The next token is used from then on: a client may use the cached one for a
	// request more while it fetches the next in the background.
	mu.Lock()
	current, expiry = "tok-2", time.Now().Add(time.Hour)
	mu.Unlock()
	for name, call := range map[string]func(){
		"Firestore":     func() { st.ListJobs(ctx) },
		"Cloud Storage": func() { blobs.Has(ctx, "k") },
	} {
		deadline := time.Now().Add(5 * time.Second)
		for call(); last() != "Bearer tok-2"; call() {
			if time.Now().After(deadline) {
				t.Fatalf("%s still got %q 5 s after the token changed, want the new one", name, last())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
