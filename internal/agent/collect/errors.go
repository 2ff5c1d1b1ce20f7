package collect

import (
	"errors"
	"fmt"
)

// PanicError is what a Source's panic is turned into.
type PanicError struct {
	// Value is what the source panicked with.
	Value any
	// Stack is the stack of the panicking goroutine.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("source panicked: %v", e.Value) }

// ErrUnknownInput is returned by Configure for a name no input has.
var ErrUnknownInput = errors.New("no such input")
