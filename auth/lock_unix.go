//go:build unix

package auth

import (
	"errors"
	"os"
	"syscall"
)

// lockFile waits for an exclusive flock(2) on f, which closing f releases.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
