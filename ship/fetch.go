package ship

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/burla-temporal/burla/blob"
	"github.com/burla-temporal/burla/job"
)

// maxManifest bounds the manifest a node reads.
const maxManifest = 64 << 20

// Fetch makes tenant's executable with the given SHA-256 (hex) digest in
// dir/<digest>, mode 0755, and returns its path: from its manifest, with the
// packs this node lacks fetched into dir/packs/<tenant> and kept for the next
// versions (each tenant's apart: a pack is used only as its tenant's store
// holds it), or
// else (a program shipped whole, by an older client) from its one blob. A file
// already there is reused. Every chunk and the whole are checked against their
// digests. Concurrent fetches are safe: each writes a temporary file and renames
// it into place.
func Fetch(ctx context.Context, s blob.Store, tenant, digest, dir string) (string, error) {
	if !job.ValidDigest(digest) {
		return "", fmt.Errorf("fetch executable %q: not a SHA-256 hex digest: %w", digest, blob.ErrDigestMismatch)
	}
	if tenant == "" {
		tenant = job.DefaultTenant
	}
	if !job.ValidTenant(tenant) {
		return "", fmt.Errorf("fetch executable %s: bad tenant %q", digest[:12], tenant)
	}
	path := filepath.Join(dir, digest)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	data, err := readBlob(ctx, s, job.ManifestKeyFor(tenant, digest))
	if errors.Is(err, blob.ErrNotFound) {
		return blob.FetchExecutable(ctx, s, job.BinaryKeyFor(tenant, digest), digest, dir)
	}
	if err != nil {
		return "", fmt.Errorf("fetch program %s: %w", digest[:12], err)
	}
	if len(data) > maxManifest {
		return "", fmt.Errorf("fetch program %s: a manifest of %d bytes: %w", digest[:12], len(data), ErrBadManifest)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return "", fmt.Errorf("fetch program %s: %w", digest[:12], err)
	}
	if hex.EncodeToString(m.Digest[:]) != digest {
		return "", fmt.Errorf("fetch program %s: its manifest is another program's: %w", digest[:12], blob.ErrDigestMismatch)
	}
	packs := make([][]byte, len(m.Packs))
	for i, p := range m.Packs {
		if packs[i], err = fetchPack(ctx, s, tenant, hex.EncodeToString(p[:]), filepath.Join(dir, "packs", tenant)); err != nil {
			return "", fmt.Errorf("fetch program %s: %w", digest[:12], err)
		}
	}
	// Only the chunks that deltas rest on are kept once decoded; the others go
	// straight to the file.
	based := make([]bool, len(m.Table))
	for _, e := range m.Table {
		for _, b := range e.Bases {
			based[b] = true
		}
	}
	plain, err := newDecoder(nil)
	if err != nil {
		return "", err
	}
	defer plain.Close()
	kept := make([][]byte, len(m.Table))
	scratch := make([]byte, 0, maxChunk)
	// A window is needed only while its chunk is decoded, and the chunks it is
	// made of are kept: one buffer per level of the chain serves them all.
	windows := make([][]byte, MaxDepth+2)
	var chunk func(i, level int) ([]byte, error)
	chunk = func(i, level int) ([]byte, error) {
		if kept[i] != nil {
			return kept[i], nil
		}
		e := m.Table[i]
		pack := packs[e.Pack]
		if e.Off+e.N > len(pack) {
			return nil, fmt.Errorf("chunk %s is past the end of its pack: %w", e.ID, ErrBadManifest)
		}
		var window []byte
		if e.Kind != kindWhole {
			// The window: the bases end to end, from Skip, for WindowLen bytes.
			window = windows[level][:0]
			skip := e.Skip
			for _, b := range e.Bases {
				c, err := chunk(b, level+1) // depths() bounded the recursion
				if err != nil {
					return nil, err
				}
				if skip >= len(c) {
					skip -= len(c)
					continue
				}
				window = append(window, c[skip:min(len(c), skip+e.WindowLen-len(window))]...)
				skip = 0
				if len(window) == e.WindowLen {
					break
				}
			}
			windows[level] = window
		}
		d := plain
		if e.Kind == kindDict {
			if d, err = newDecoder(window); err != nil {
				return nil, err
			}
			defer d.Close()
		}
		dst := scratch[:0] // a chunk written and forgotten is decoded into scratch
		if based[i] {
			dst = make([]byte, 0, e.Size)
		}
		c, err := decode(d, e.Kind, pack[e.Off:e.Off+e.N], window, dst, e.Size)
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w", e.ID, err)
		}
		if sha256.Sum256(c) != e.ID {
			return nil, fmt.Errorf("chunk %s: %w", e.ID, blob.ErrDigestMismatch)
		}
		if based[i] {
			kept[i] = c
		}
		return c, nil
	}
	path, err = blob.WriteVerified(dir, digest, 0o755, func(w io.Writer) error {
		for _, i := range m.File {
			c, err := chunk(i, 0)
			if err != nil {
				return err
			}
			if _, err := w.Write(c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fetch program %s: %w", digest[:12], err)
	}
	return path, nil
}

// fetchPack returns the pack with the given digest, from dir if an earlier
// fetch kept it there, or else from the store, keeping it in dir.
func fetchPack(ctx context.Context, s blob.Store, tenant, digest, dir string) ([]byte, error) {
	path := filepath.Join(dir, digest)
	data, err := os.ReadFile(path)
	if err == nil && hex.EncodeToString(sumOf(data)) == digest {
		return data, nil
	}
	if err == nil {
		os.Remove(path) // damaged on this node's disk: fetched again
	}
	if _, err := blob.FetchFile(ctx, s, job.PackKeyFor(tenant, digest), digest, dir, 0o644); err != nil {
		return nil, fmt.Errorf("pack %s: %w", digest[:12], err)
	}
	return os.ReadFile(path)
}

func sumOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
