package burla

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/job"
)

func TestSharedFilesRoundTrip(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	s := &SharedFiles{blobs: blobs, prefix: job.SharedPrefix("acme")}
	dir := t.TempDir()
	local := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(local, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Upload(ctx, local, "data/in.csv"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "notes.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	// The files are the tenant's blobs, under its prefix.
	if ok, _ := blobs.Has(ctx, "shared-acme/data/in.csv"); !ok {
		t.Fatal("uploaded file is not the blob shared-acme/data/in.csv")
	}
	files, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "data/in.csv" || files[0].Size != 8 || files[1].Name != "notes.txt" || files[1].Modified.IsZero() {
		t.Fatalf("List = %+v; want data/in.csv (8 bytes) and notes.txt, sorted, with times", files)
	}
	if files, err := s.List(ctx, "data/"); err != nil || len(files) != 1 {
		t.Fatalf("List data/ = %+v, %v; want data/in.csv", files, err)
	}
	out := filepath.Join(dir, "copy.csv")
	if err := s.Download(ctx, "data/in.csv", out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "a,b\n1,2\n" {
		t.Fatalf("downloaded %q", got)
	}
	r, err := s.Open(ctx, "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "hello" {
		t.Fatalf("Open read %q", got)
	}
	for range 2 { // removing what is gone is fine
		if err := s.Remove(ctx, "notes.txt"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Open(ctx, "notes.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a removed file: %v; want fs.ErrNotExist", err)
	}
	if err := s.Download(ctx, "notes.txt", out); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Download of a removed file: %v; want fs.ErrNotExist", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "a,b\n1,2\n" {
		t.Fatalf("a failed download changed the local file to %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("download left files behind: %v", entries)
	}
}

type brokenReader struct{}

func (brokenReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestSharedPutKeepsEarlierFileOnError(t *testing.T) {
	ctx := context.Background()
	s := &SharedFiles{blobs: &memblob.Store{}, prefix: job.SharedPrefix("acme")}
	if err := s.Put(ctx, "x", strings.NewReader("earlier")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "x", io.MultiReader(bytes.NewReader(make([]byte, 100)), brokenReader{})); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	r, err := s.Open(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); string(got) != "earlier" {
		t.Fatalf("after a failed Put the file holds %q", got)
	}
}

func TestSharedFilesRefuseBadNames(t *testing.T) {
	ctx := context.Background()
	s := &SharedFiles{blobs: &memblob.Store{}, prefix: job.SharedPrefix("acme")}
	for name, says := range map[string]string{
		"":               "empty",
		"/etc/passwd":    "absolute",
		"../other/x":     `".."`,
		"a/../../b":      `".."`,
		"dir/":           "ends with /",
		".burla-tmp-123": ".burla-",
	} {
		checks := map[string]error{
			"Put":    s.Put(ctx, name, strings.NewReader("x")),
			"Remove": s.Remove(ctx, name),
			"Upload": s.Upload(ctx, "/nonexistent", name),
		}
		_, checks["Open"] = s.Open(ctx, name)
		checks["Download"] = s.Download(ctx, name, filepath.Join(t.TempDir(), "x"))
		for op, err := range checks {
			if !errors.Is(err, ErrBadSharedName) || !strings.Contains(err.Error(), says) {
				t.Errorf("%s %q: %v; want ErrBadSharedName saying %q", op, name, err, says)
			}
		}
	}
	if _, err := s.List(ctx, "../"); !errors.Is(err, ErrBadSharedName) {
		t.Errorf("List ../: %v; want ErrBadSharedName", err)
	}
	if files, err := s.List(ctx, "da"); err != nil || len(files) != 0 {
		t.Errorf("List da = %v, %v; want nothing, no error", files, err)
	}
}

func TestSharedDirIsTheWorkersVariable(t *testing.T) {
	t.Setenv(job.EnvSharedDir, "/workspace/shared")
	if got := SharedDir(); got != "/workspace/shared" {
		t.Fatalf("SharedDir() = %q", got)
	}
}
