//go:build unix

package workload

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// procCred is the identity a workload runs as.
type procCred = syscall.Credential

// newSysProcAttr puts the child in its own process group, so signals reach
// everything it started.
func newSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}

// exitSignal returns the name of the signal that ended the process, "" if
// it exited normally.
func exitSignal(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}

// credential resolves name (a user name or uid) for running a workload as
// that user; it returns nil, nil when no switch is needed, and the user's
// home directory for HOME.
func credential(name string) (*procCred, string, error) {
	if name == "" {
		return nil, "", nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unk user.UnknownUserError
		if _, perr := strconv.Atoi(name); perr == nil && errors.As(err, &unk) {
			u, err = user.LookupId(name)
		}
		if err != nil {
			return nil, "", fmt.Errorf("looking up user %q: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("user %q has a non-numeric uid or gid", name)
	}
	if uid == 0 {
		return nil, "", fmt.Errorf("user %q is root", name)
	}
	if os.Geteuid() != 0 {
		if int(uid) == os.Geteuid() {
			return nil, u.HomeDir, nil
		}
		return nil, "", fmt.Errorf("running as user %q needs the agent to run as root", name)
	}
	cred := &procCred{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, u.HomeDir, nil
}

// setCredential sets cred on cmd.
func setCredential(cmd *exec.Cmd, cred *procCred) {
	if cred != nil {
		cmd.SysProcAttr.Credential = cred
	}
}
