//go:build linux || darwin || freebsd || netbsd || openbsd

package ota

import (
	"fmt"
	"os"
	"syscall"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// verifyFile checks path against tf's signed length and hashes with
// go-tuf's VerifyLengthHashes. The file is memory-mapped rather than read,
// so verifying a large artifact does not grow the agent's heap.
func verifyFile(path string, tf *metadata.TargetFiles) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != tf.Length {
		return &metadata.ErrLengthOrHashMismatch{Msg: fmt.Sprintf("length verification failed - expected %d, got %d", tf.Length, fi.Size())}
	}
	if fi.Size() == 0 {
		return tf.VerifyLengthHashes(nil)
	}
	if int64(int(fi.Size())) != fi.Size() {
		return fmt.Errorf("%s: too large to map", path)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", path, err)
	}
	verr := tf.VerifyLengthHashes(data)
	if err := syscall.Munmap(data); err != nil && verr == nil {
		verr = err
	}
	return verr
}
