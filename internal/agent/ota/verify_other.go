//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package ota

import (
	"fmt"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// verifyFile checks path against tf's signed length and hashes with
// go-tuf's VerifyLengthHashes.
func verifyFile(path string, tf *metadata.TargetFiles) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() != tf.Length {
		return &metadata.ErrLengthOrHashMismatch{Msg: fmt.Sprintf("length verification failed - expected %d, got %d", tf.Length, fi.Size())}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return tf.VerifyLengthHashes(data)
}
