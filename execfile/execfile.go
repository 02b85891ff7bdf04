// Package execfile answers questions about executable files that decide where they
// can run.
package execfile

import (
	"debug/elf"
	"fmt"
)

// Dynamic reports whether the ELF executable at path asks for a dynamic loader, and
// so cannot run FROM scratch, where there is no C library.
func Dynamic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("%s is not a linux executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}
