// Package lazyre compiles a regular expression the first time it is used
// rather than at program start. The agent validates deployment specs
// and artifact names only when it meets one; compiling those expressions
// at start cost every agent memory it may never need (BENCHMARKS.md,
// agent RSS). It imports only the standard library.
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr on its first call, panicking
// if it does not compile (as regexp.MustCompile does), and returns the
// same *regexp.Regexp on every call. It is safe for concurrent use.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
