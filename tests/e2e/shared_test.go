package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/job"
	burla "github.com/burla-temporal/burla/sdk"
)

// sharedOp is one call on the shared directory: Op "hash" returns the SHA-256 of
// the file Name, "read" its content, "write" writes Data to it, "where" returns
// the directory.
type sharedOp struct {
	Op   string
	Name string
	Data string
}

var sharedCall = burla.Func("shared", func(_ context.Context, op sharedOp) (string, error) {
	dir := burla.SharedDir()
	if dir == "" {
		return "", errors.New("no shared directory")
	}
	p := filepath.Join(dir, filepath.FromSlash(op.Name))
	switch op.Op {
	case "where":
		return dir, nil
	case "read":
		b, err := os.ReadFile(p)
		return string(b), err
	case "hash":
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		defer f.Close()
		h := sha256.New()
		_, err = io.Copy(h, f)
		return hex.EncodeToString(h.Sum(nil)), err
	case "write":
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		return op.Name, os.WriteFile(p, []byte(op.Data), 0o644)
	}
	return "", fmt.Errorf("unknown op %q", op.Op)
})

// TestSharedFiles: the client uploads files, the calls read them; the calls write
// files, the client reads them as soon as the job has returned; a later job sees
// an earlier job's files; and the client lists and removes them.
func TestSharedFiles(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	files := dev.Cluster.Shared()
	// Shared files outlive jobs: each run of the test works under a fresh directory.
	base := fmt.Sprintf("e2e-%d/", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		left, _ := files.List(ctx, base)
		for _, f := range left {
			files.Remove(ctx, f.Name)
		}
	})
	if err := files.Put(ctx, base+"in.txt", strings.NewReader("from the client")); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20) // several chunks of every store's upload
	rand.Read(big)
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := files.Upload(ctx, local, base+"data/big.bin"); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)

	outs, err := burla.RemoteParallelMap(ctx, sharedCall, []sharedOp{
		{Op: "read", Name: base + "in.txt"}, {Op: "hash", Name: base + "data/big.bin"}, {Op: "where"},
	}, opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0] != "from the client" || outs[1] != hex.EncodeToString(sum[:]) {
		t.Fatalf("calls read %.40q and hashed %.12s; want the client's files", outs[0], outs[1])
	}
	// The process runtime: a directory of the worker's own (under the cluster's
	// directory, or, when that is closed to the worker's user, under TMPDIR; see
	// process.WorkersDir).
	if !strings.Contains(outs[2], "/worker-default-") || filepath.Base(outs[2]) != "shared" {
		t.Errorf("the call's shared directory is %s; want a worker's", outs[2])
	}

	// Outputs written by the calls, on both nodes, are readable once the job returns.
	var writes []sharedOp
	for i := range 40 {
		writes = append(writes, sharedOp{Op: "write", Name: fmt.Sprintf("%sout/%02d.txt", base, i), Data: fmt.Sprintf("output %d", i)})
	}
	if _, err := burla.RemoteParallelMap(ctx, sharedCall, writes, opts()...); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		r, err := files.Open(ctx, w.Name)
		if err != nil {
			t.Fatalf("a call's output, right after the job: %v", err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(got) != w.Data {
			t.Fatalf("%s reads %q (%v); want %q", w.Name, got, err, w.Data)
		}
	}
	listed, err := files.List(ctx, base+"out/")
	if err != nil || len(listed) != len(writes) || listed[0].Name != base+"out/00.txt" || listed[0].Size != int64(len("output 0")) {
		t.Fatalf("List out/ = %d files (%v), first %+v; want the %d written, sorted", len(listed), err, listed[:min(1, len(listed))], len(writes))
	}

	// A later job sees them; a removed file is gone for it.
	if err := files.Remove(ctx, base+"in.txt"); err != nil {
		t.Fatal(err)
	}
	outs, err = burla.RemoteParallelMap(ctx, sharedCall, []sharedOp{{Op: "read", Name: base + "out/07.txt"}, {Op: "read", Name: base + "in.txt"}},
		opts(burla.ReturnErrors())...)
	var ie *burla.InputErrors
	if !errors.As(err, &ie) || len(ie.Errors) != 1 || ie.Errors[0].Index != 1 || !strings.Contains(ie.Errors[0].Message, "no such file") {
		t.Fatalf("reading a removed file: %v; want input 1 alone to fail, finding no such file", err)
	}
	if outs[0] != "output 7" {
		t.Fatalf("a later job read %q; want an earlier job's output", outs[0])
	}
	out := filepath.Join(t.TempDir(), "07.txt")
	if err := files.Download(ctx, base+"out/07.txt", out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "output 7" {
		t.Fatalf("downloaded %q", got)
	}
	if _, err := files.Open(ctx, base+"in.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a removed file: %v; want fs.ErrNotExist", err)
	}
	if err := files.Put(ctx, "../escape", bytes.NewReader(nil)); !errors.Is(err, burla.ErrBadSharedName) {
		t.Fatalf("Put ../escape: %v; want ErrBadSharedName", err)
	}
}

// A finished job's environment variables, secrets, are deleted from the store.
func TestEnvDeletedWhenJobEnds(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	var jobID string
	outs, err := burla.RemoteParallelMap(ctx, getenv, []string{"E2E_SECRET"},
		opts(burla.Env(map[string]string{"E2E_SECRET": "gone after the job"}), burla.OnStart(func(id string) { jobID = id }))...)
	if err != nil || outs[0] != "gone after the job" {
		t.Fatalf("job = %q, %v", outs, err)
	}
	// The client has its results before the job workflow has cleaned up.
	if err := dev.Cluster.Temporal().GetWorkflow(ctx, jobID, "").Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if has, err := dev.Cluster.Store().Has(ctx, job.EnvKey(jobID)); has || err != nil {
		t.Fatalf("after job %s ended its environment blob is present = %v (%v); want it deleted", jobID, has, err)
	}
}
