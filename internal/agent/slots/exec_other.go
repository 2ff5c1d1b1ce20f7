//go:build !unix

package slots

import (
	"errors"
	"fmt"
)

// execve is not available: Launch then runs the installed binary.
func execve(path string, argv, env []string) error {
	return fmt.Errorf("exec %s: %w", path, errors.ErrUnsupported)
}

// lock is a no-op where flock is missing; only one agent runs anyway.
func lock(string) (func(), error) { return func() {}, nil }
