package nodeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/burla-temporal/burla/blob/memblob"
	"github.com/burla-temporal/burla/job"
)

// The program cache keeps at most its bound of bytes, deleting the programs
// used least recently first, and fetches an evicted program again when a job
// needs it.
func TestBinCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	blobs := &memblob.Store{}
	digests := make([]string, 4)
	for i := range digests {
		b := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		sum := sha256.Sum256(b)
		digests[i] = hex.EncodeToString(sum[:])
		if err := blobs.Put(ctx, job.BinaryKeyFor("acme", digests[i]), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	c := &binCache{dir: t.TempDir(), blobs: blobs, max: 2500} // room for two programs
	get := func(i int) {
		t.Helper()
		if _, err := c.get(ctx, "acme", digests[i]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // modification times apart
	}
	cached := func() map[int]bool {
		got := map[int]bool{}
		for i, d := range digests {
			if _, err := os.Stat(filepath.Join(c.dir, d)); err == nil {
				got[i] = true
			}
		}
		return got
	}
	get(0)
	get(1)
	get(0) // 0 is used again: 1 is now the least recently used
	get(2)
	if got := cached(); len(got) != 2 || !got[0] || !got[2] {
		t.Fatalf("cached after 0, 1, 0, 2 with room for two: %v; want 0 and 2", got)
	}
	get(1) // fetched again
	if got := cached(); len(got) != 2 || !got[1] || !got[2] {
		t.Fatalf("cached after 1 again: %v; want 1 and 2", got)
	}
}
