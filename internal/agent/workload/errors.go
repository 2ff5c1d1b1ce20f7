package workload

import "errors"

// Sentinel errors of the package.
var (
	// ErrInvalidSpec wraps every problem Spec.Validate and Apply report.
	ErrInvalidSpec = errors.New("invalid workload spec")
	// ErrRunning: Run was called while another Run is active or after it
	// returned; a Supervisor runs once.
	ErrRunning = errors.New("supervisor already ran")
	// ErrStopped: Apply was called after Run returned.
	ErrStopped = errors.New("supervisor stopped")
)
