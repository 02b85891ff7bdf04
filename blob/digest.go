package blob

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// Digests hashes content with every algorithm a store's Info.Digest may use, so
// that a copy of a blob can be recognised in a listing whichever store made it:
// write the content to it, then compare with Match.
type Digests struct {
	sha, md hash.Hash
}

// NewDigests returns an empty Digests.
func NewDigests() *Digests { return &Digests{sha: sha256.New(), md: md5.New()} }

// Write adds p to the content; it never fails.
func (d *Digests) Write(p []byte) (int, error) {
	d.sha.Write(p)
	d.md.Write(p)
	return len(p), nil
}

// Sums are the content's digests in Info.Digest's form.
func (d *Digests) Sums() []string {
	return []string{SHA256Digest(d.sha.Sum(nil)), MD5Digest(d.md.Sum(nil))}
}

// SHA256Digest is a SHA-256 sum in Info.Digest's form.
func SHA256Digest(sum []byte) string { return "sha256:" + hex.EncodeToString(sum) }

// MD5Digest is an MD5 sum in Info.Digest's form.
func MD5Digest(sum []byte) string { return "md5:" + hex.EncodeToString(sum) }
