package firestorestore

import (
	"context"
	"net/url"

	"github.com/burla-temporal/burla/blob/gcsblob"
	"github.com/burla-temporal/burla/store"
	"github.com/burla-temporal/burla/store/storeurl"
)

// Importing the package makes storeurl.Open take firestore:// URLs: Firestore
// for the records and the URL's GCS bucket for blobs, reached as the Google Cloud
// service account of the machine or of Application Default Credentials, never
// with an API key.
func init() { storeurl.Register("firestore", open) }

func open(ctx context.Context, u *url.URL, _, _ string) (store.Backend, error) {
	f, err := storeurl.ParseFirestore(u.String())
	if err != nil {
		return nil, err
	}
	blobs, err := gcsblob.Dial(ctx, f.Bucket, f.Prefix+"/")
	if err != nil {
		return nil, err
	}
	st, err := Dial(ctx, Config{Project: f.Project, Database: f.Database, Prefix: f.Prefix, Blobs: blobs})
	if err != nil {
		blobs.Close()
		return nil, err
	}
	return st, nil
}
