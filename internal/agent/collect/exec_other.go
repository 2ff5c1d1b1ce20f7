//go:build !unix

package collect

import "os/exec"

// ownProcessGroup leaves cmd as is: without process groups, cancelling
// kills the command itself only.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup does nothing without process groups.
func killProcessGroup(int) {}
