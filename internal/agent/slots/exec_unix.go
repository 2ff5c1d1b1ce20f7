//go:build unix

package slots

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// execve replaces the process image; it returns only on failure.
func execve(path string, argv, env []string) error {
	return syscall.Exec(path, argv, env)
}

// lock takes an exclusive lock on <data>/slots/lock, waiting for a holder
// (Stage holds it for the copy, everything else for milliseconds). The
// kernel drops it when the process dies; it is close-on-exec, so neither
// an exec'd slot nor `<binary> version` inherits it.
func lock(dataDir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(slotsDir(dataDir), lockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening slot lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
