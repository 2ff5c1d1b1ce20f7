//go:build !unix

package agent

// lockDir does nothing where flock(2) does not exist; do not point two
// agents at one data directory there.
func lockDir(string) (unlock func(), err error) { return func() {}, nil }
