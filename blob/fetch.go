package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/burla-temporal/burla/job"
)

// ErrDigestMismatch is returned by FetchExecutable when a blob does not hash to the
// digest it is stored under.
var ErrDigestMismatch = errors.New("content does not match its digest")

// FetchExecutable copies the blob under key, whose content has the given SHA-256 (hex)
// digest, to dir/<digest> as an executable, verifying the digest on the way. A file
// already there is reused. Concurrent fetches of one digest are safe: each writes a
// temporary file and renames it into place.
func FetchExecutable(ctx context.Context, s Store, key, digest, dir string) (string, error) {
	return FetchFile(ctx, s, key, digest, dir, 0o755)
}

// FetchFile copies the blob under key, whose content has the given SHA-256 (hex)
// digest, to dir/<digest> with the given mode, verifying the digest on the way,
// as FetchExecutable does.
func FetchFile(ctx context.Context, s Store, key, digest, dir string, mode os.FileMode) (string, error) {
	if !job.ValidDigest(digest) {
		// The digest names a file under dir: nothing but hex may pass.
		return "", fmt.Errorf("fetch %q: not a SHA-256 hex digest: %w", digest, ErrDigestMismatch)
	}
	path := filepath.Join(dir, digest)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	r, err := s.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer r.Close()
	path, err = WriteVerified(dir, digest, mode, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("fetch blob %s: %w", key, err)
	}
	return path, nil
}

// WriteVerified writes what write produces to dir/<digest> with the given mode,
// whole or not at all: into a temporary file, renamed into place only if its
// content has the given SHA-256 (hex) digest (ErrDigestMismatch if not).
// Concurrent writers of one digest are safe.
func WriteVerified(dir, digest string, mode os.FileMode, write func(io.Writer) error) (string, error) {
	if !job.ValidDigest(digest) {
		// The digest names a file under dir: nothing but hex may pass.
		return "", fmt.Errorf("write %q: not a SHA-256 hex digest: %w", digest, ErrDigestMismatch)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, digest+".tmp*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	err = write(io.MultiWriter(tmp, h))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return "", fmt.Errorf("the content has digest %s, not %s: %w", got[:12], digest[:12], ErrDigestMismatch)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return "", err
	}
	path := filepath.Join(dir, digest)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
