//go:build !unix

package workload

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// procCred is unused outside Unix: User is refused.
type procCred struct{}

func newSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// signalGroup can only reach the process itself outside Unix.
func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		return p.Kill()
	}
	return p.Signal(sig)
}

func exitSignal(*os.ProcessState) string { return "" }

func credential(name string) (*procCred, string, error) {
	if name != "" {
		return nil, "", errors.New("running as another user is supported on Unix only")
	}
	return nil, "", nil
}

func setCredential(*exec.Cmd, *procCred) {}
