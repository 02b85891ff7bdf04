package firestorestore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"google.golang.org/api/option"

	"github.com/burla-temporal/burla/blob/gcsblob"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
)

// Importing the package makes storeurl.Open take firestore:// URLs: Firestore
// for the records and the URL's GCS bucket for blobs, reached as the Google Cloud
// service account of the machine or of Application Default Credentials, or with
// the tokens storeurl.Credentials.Token gives, never with an API key.
func init() { storeurl.Register("firestore", open) }

// Scopes are the OAuth2 scopes the store's clients need: Firestore's and read and
// write of Cloud Storage objects. A node agent asks for tokens of these alone to
// hand its workers.
var Scopes = []string{
	"https://www.googleapis.com/auth/datastore",
	"https://www.googleapis.com/auth/devstorage.read_write",
}

func open(ctx context.Context, u *url.URL, _ string, c storeurl.Credentials) (store.Backend, error) {
	f, err := storeurl.ParseFirestore(u.String())
	if err != nil {
		return nil, err
	}
	var opts []option.ClientOption
	if c.Token != nil {
		opts = append(opts, TokenOption(c.Token))
	}
	blobs, err := gcsblob.Dial(ctx, f.Bucket, f.Prefix+"/", opts...)
	if err != nil {
		return nil, err
	}
	st, err := Dial(ctx, Config{Project: f.Project, Database: f.Database, Prefix: f.Prefix, Blobs: blobs}, opts...)
	if err != nil {
		blobs.Close()
		return nil, err
	}
	return st, nil
}

// TokenOption is the client option that reaches Google Cloud with the bearer
// tokens token gives, asked for at each request (token is to cache them).
func TokenOption(token func(context.Context) (string, time.Time, error)) option.ClientOption {
	return option.WithAuthCredentials(auth.NewCredentials(&auth.CredentialsOptions{TokenProvider: tokenFunc(token)}))
}

// tokenFunc is an auth.TokenProvider of a function's tokens.
type tokenFunc func(context.Context) (string, time.Time, error)

func (f tokenFunc) Token(ctx context.Context) (*auth.Token, error) {
	v, expiry, err := f(ctx)
	if err != nil {
		return nil, err
	}
	return &auth.Token{Value: v, Type: "Bearer", Expiry: expiry}, nil
}

// NodeTokenRefresh is how long before its token expires a node agent fetches the
// next for its workers: long enough before that the workers' clients, which
// cache a token until its last minutes, have the next well before they need it.
const NodeTokenRefresh = 10 * time.Minute

// WorkerTokens returns, for a node agent whose store is storeURL, where its
// workers' access tokens come from (nodeagent.Config.WorkerTokens): the agent's
// own Application Default Credentials (on a VM, its service account, which only
// root may ask the metadata server for), limited to Scopes. It returns nil where
// workers need no token: a store other than Firestore, or Firestore's emulator.
func WorkerTokens(storeURL string) (func(context.Context) (string, time.Time, error), error) {
	u, err := url.Parse(storeURL)
	if err != nil || u.Scheme != "firestore" || os.Getenv("FIRESTORE_EMULATOR_HOST") != "" {
		return nil, nil
	}
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: Scopes, EarlyTokenRefresh: NodeTokenRefresh})
	if err != nil {
		return nil, fmt.Errorf("credentials for the workers' access tokens: %w", err)
	}
	return func(ctx context.Context) (string, time.Time, error) {
		tok, err := creds.Token(ctx)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("access token for the workers: %w", err)
		}
		return tok.Value, tok.Expiry, nil
	}, nil
}
