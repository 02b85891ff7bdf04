// Package storeurl opens a data-plane backend named by a URL, so that every
// component (the SDK, the control plane, node agents and container workers) finds
// the same store from one setting:
//
//	nats://host:4222                                  NATS JetStream (burla dev, self-hosted)
//	tls://host:4222                                   the same over TLS, trusting the system's roots
//	tls://host:4222?ca=FILE                           over TLS, trusting the CA certificates in FILE (PEM)
//	tls://host:4222?ca=FILE&cert=FILE&key=FILE        and presenting a client certificate (mutual TLS)
//	firestore://PROJECT?bucket=BUCKET                 Firestore's (default) database and a GCS bucket
//	firestore://PROJECT/DATABASE?bucket=BUCKET&prefix=P
//
// A NATS URL with any of ca, cert and key asks for TLS whether it says nats:// or
// tls://. ca_data=BASE64 gives the CA certificates themselves (DER, base64url
// without padding) instead of a file: Portable puts them there for components that
// run where the file is not.
//
// prefix (default "burla") names the Firestore collections and the folder of the
// bucket, so that several clusters can share a project. Google Cloud credentials
// come from Application Default Credentials, or from Credentials.Token;
// FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST point the clients at
// emulators.
//
// NATS is built in. Other backends register their schemes, as database/sql
// drivers do, so that a program links only those it imports: Firestore and GCS
// are in a program that imports store/firestorestore (the burla command does).
package storeurl

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/natsstore"
)

// Opener opens the backend a URL of its scheme names; name identifies the
// connection where the backend has such a thing.
type Opener func(ctx context.Context, u *url.URL, name string, c Credentials) (store.Backend, error)

// Credentials are what a component reaches its store with, besides the URL.
type Credentials struct {
	// Key is the component's API key, if any: on NATS, the connection's
	// credential.
	Key string
	// Token, if set, gives the OAuth2 access token (and its expiry) a cloud
	// store is reached with, in place of Application Default Credentials: a
	// node's container workers get theirs from their node agent, as the VM's
	// metadata server is closed to them and to the tenants' code they run.
	Token func(ctx context.Context) (token string, expiry time.Time, err error)
}

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes Open take URLs of scheme, which open calls. A backend's package
// calls it from init; registering a scheme twice panics.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	if _, dup := openers[scheme]; dup || scheme == "nats" || scheme == "tls" {
		panic("storeurl: scheme " + scheme + " registered twice")
	}
	openers[scheme] = open
}

// knownPackages are the packages that register the schemes Burla has, for the
// error that says which one a program lacks.
var knownPackages = map[string]string{"firestore": "github.com/burla-temporal/burla/store/firestorestore"}

// Default is the store of `burla dev`.
const Default = "nats://127.0.0.1:4222"

// Open connects to the backend rawURL names with the component's API key from
// the environment (auth.EnvKey), if any; see OpenKey.
func Open(ctx context.Context, rawURL, name string) (store.Backend, error) {
	return OpenKey(ctx, rawURL, name, os.Getenv(auth.EnvKey))
}

// OpenKey connects to the backend rawURL names; name identifies the connection in
// the server's view where the backend has one (NATS). On NATS the key, if any, is
// the connection's credential: a tenant's key opens its tenant's account, and a
// key of one of the cluster's own roles opens every tenant's (natsstore.Tenants).
// Firestore and GCS are reached as the Google Cloud service account of the
// machine or of Application Default Credentials, never with an API key.
func OpenKey(ctx context.Context, rawURL, name, key string) (store.Backend, error) {
	return OpenWith(ctx, rawURL, name, Credentials{Key: key})
}

// OpenWith connects to the backend rawURL names with c, as OpenKey does with a
// key.
func OpenWith(ctx context.Context, rawURL, name string, c Credentials) (store.Backend, error) {
	key := c.Key
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "nats", "tls":
		server, opts, err := parseNATS(u)
		if err != nil {
			return nil, err
		}
		if key == "" {
			return natsstore.Connect(ctx, server, name, opts...)
		}
		p, err := auth.ParseKey(key)
		if err != nil {
			return nil, err
		}
		if p.Role.System() {
			return natsstore.ConnectTenants(ctx, server, name, key, opts...)
		}
		return natsstore.Connect(ctx, server, name, append(opts, nats.Token(key))...)
	case "":
		return nil, fmt.Errorf("store URL %q has no scheme: use nats://host:port, tls://host:port or firestore://PROJECT?bucket=BUCKET", rawURL)
	}
	openersMu.RLock()
	open, ok := openers[u.Scheme]
	openersMu.RUnlock()
	if ok {
		return open(ctx, u, name, c)
	}
	if u.Scheme == "firestore" { // a bad URL says so, linked or not
		if _, err := ParseFirestore(rawURL); err != nil {
			return nil, err
		}
	}
	if pkg, known := knownPackages[u.Scheme]; known {
		return nil, fmt.Errorf("store URL %s: the %s store is not linked into this program: import _ %q", u.Redacted(), u.Scheme, pkg)
	}
	return nil, fmt.Errorf("store URL %q: unknown scheme %q (nats, tls or firestore)", rawURL, u.Scheme)
}

// Firestore is a parsed firestore:// URL.
type Firestore struct {
	Project, Database, Bucket, Prefix string
}

// ParseFirestore parses firestore://PROJECT[/DATABASE]?bucket=B[&prefix=P].
func ParseFirestore(rawURL string) (Firestore, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "firestore" {
		return Firestore{}, fmt.Errorf("store URL %q is not firestore://PROJECT?bucket=BUCKET", rawURL)
	}
	f := Firestore{
		Project:  u.Host,
		Database: strings.Trim(u.Path, "/"),
		Bucket:   u.Query().Get("bucket"),
		Prefix:   u.Query().Get("prefix"),
	}
	if f.Prefix == "" {
		f.Prefix = "burla"
	}
	switch {
	case f.Project == "":
		return f, fmt.Errorf("store URL %q names no project: firestore://PROJECT?bucket=BUCKET", rawURL)
	case f.Bucket == "":
		return f, fmt.Errorf("store URL %q names no bucket for blobs: add ?bucket=BUCKET", rawURL)
	case strings.Contains(f.Database, "/"):
		return f, fmt.Errorf("store URL %q: database %q is not one path segment", rawURL, f.Database)
	}
	for k := range u.Query() {
		if k != "bucket" && k != "prefix" {
			return f, fmt.Errorf("store URL %q: unknown parameter %q (bucket, prefix)", rawURL, k)
		}
	}
	return f, nil
}
