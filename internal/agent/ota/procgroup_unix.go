//go:build unix

package ota

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts cmd in a new process group and makes canceling
// it kill the whole group, so children the command started die with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
