package storeurl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/store/storeurl"
)

func TestParseFirestore(t *testing.T) {
	f, err := storeurl.ParseFirestore("firestore://my-proj/burla-db?bucket=my-bucket&prefix=c1")
	if err != nil {
		t.Fatal(err)
	}
	if f != (storeurl.Firestore{Project: "my-proj", Database: "burla-db", Bucket: "my-bucket", Prefix: "c1"}) {
		t.Errorf("parsed %+v", f)
	}
	f, err = storeurl.ParseFirestore("firestore://my-proj?bucket=b")
	if err != nil || f.Database != "" || f.Prefix != "burla" {
		t.Errorf("parsed %+v, %v; want the default database and prefix burla", f, err)
	}
}

func TestBadURLs(t *testing.T) {
	for url, want := range map[string]string{
		"firestore://?bucket=b":            "names no project",
		"firestore://p":                    "names no bucket",
		"firestore://p?bucket=b&buckets=c": "unknown parameter",
		"firestore://p/a/b?bucket=b":       "not one path segment",
		"redis://localhost:6379":           "unknown scheme",
		"localhost:4222":                   "unknown scheme",
		"127.0.0.1":                        "no scheme",
	} {
		_, err := storeurl.Open(context.Background(), url, "test")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error saying %q", url, err, want)
		}
	}
}

// A program that imports only the SDK links no Firestore: a firestore:// URL
// then says which package to import. (tests/gcpe2e opens one with the import.)
func TestFirestoreNotLinkedSaysWhatToImport(t *testing.T) {
	_, err := storeurl.Open(context.Background(), "firestore://p?bucket=b", "test")
	if err == nil || !strings.Contains(err.Error(), `import _ "github.com/burla-temporal/burla/store/firestorestore"`) {
		t.Errorf("opening a firestore:// URL without the Firestore store linked: %v; want it to name the package to import", err)
	}
	if _, err := storeurl.Open(context.Background(), "s3://bucket", "test"); err == nil || !strings.Contains(err.Error(), `unknown scheme "s3"`) {
		t.Errorf("an unknown scheme: %v", err)
	}
}
