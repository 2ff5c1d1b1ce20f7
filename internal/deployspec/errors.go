package deployspec

import (
	"errors"
	"strings"
)

// ErrInvalid is matched (with errors.Is) by every Problems error: the spec
// was read but is wrong.
var ErrInvalid = errors.New("invalid deployment spec")

// ErrTooLarge is returned by Parse for input over MaxBytes.
var ErrTooLarge = errors.New("deployment spec too large")

// Problem is one thing wrong with a spec.
type Problem struct {
	// Path is the key the problem is about, e.g. "resources.memory",
	// "ports[1]" or "env.LOG_LEVEL"; empty for the document as a whole.
	Path string `json:"path"`
	// Message says what is wrong and, where it helps, what to write instead.
	Message string `json:"message"`
}

// Error returns "path: message", or the message alone when Path is empty.
func (p Problem) Error() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem found in a spec, in document order. It is the
// error type of Parse and Validate, so a caller (the hub's API) can use
// errors.As to return each problem with its key.
type Problems []Problem

// Error lists the problems one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrInvalid.
func (ps Problems) Is(target error) bool { return target == ErrInvalid }

// err returns ps as an error, or nil when there are none (never a typed nil).
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
