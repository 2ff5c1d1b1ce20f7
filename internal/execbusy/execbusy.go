// Package execbusy starts programs that were written a moment ago.
//
// On Linux, a file just closed for writing can still be "busy" (ETXTBSY)
// when another goroutine of the same process forked while the file was
// open: the child holds a copy of the write descriptor until it calls
// exec. The window is short, so starting again a few times is the cure
// (see the Go issue tracker, 22315).
package execbusy

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Attempts and Pause bound the retries of Start: 20 × 10 ms.
const (
	Attempts = 20
	Pause    = 10 * time.Millisecond
)

// Start builds a command with build and starts it, building a fresh one
// and trying again while the start fails with ETXTBSY. It returns the
// started command, or the last one and its error.
func Start(build func() *exec.Cmd) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	var err error
	for i := range Attempts {
		if i > 0 {
			time.Sleep(Pause)
		}
		cmd = build()
		if err = cmd.Start(); !errors.Is(err, syscall.ETXTBSY) {
			return cmd, err
		}
	}
	return cmd, err
}

// WriteFile is os.WriteFile holding off this process's forks while the
// file is open, so no child started meanwhile keeps it busy.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	return os.WriteFile(name, data, perm)
}
