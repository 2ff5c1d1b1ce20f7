//go:build unix

package collect

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes cmd the leader of a new process group and makes
// cancelling it kill the whole group, so that a shell's children die with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		killProcessGroup(cmd.Process.Pid)
		return nil
	}
}

// killProcessGroup kills the process group led by pid, if it still exists.
// The group's id cannot be reused while any member is alive, so killing it
// after the leader was reaped hits only its leftovers.
func killProcessGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
