package ship

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"strings"
)

// Strip zeroes the debug information of the ELF executable b in place and
// returns b: the .debug_* and compressed .zdebug_* sections, which no loader
// maps and no Go runtime reads. Anything that is not an ELF file is returned as
// it is.
func Strip(b []byte) []byte {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return b
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_ALLOC != 0 {
			continue
		}
		if !strings.HasPrefix(s.Name, ".debug_") && !strings.HasPrefix(s.Name, ".zdebug_") {
			continue
		}
		end := s.Offset + s.FileSize
		if s.Offset > uint64(len(b)) || end > uint64(len(b)) || end < s.Offset {
			continue
		}
		clear(b[s.Offset:end])
	}
	return b
}

// Digest reads the executable at path and returns it as Strip leaves it, which
// is what nodes run, with its SHA-256 (hex).
func Digest(path string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	b = Strip(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}
