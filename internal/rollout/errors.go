package rollout

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoDevices means that no device matches the selector.
	ErrNoDevices = errors.New("no device matches the selector")
	// ErrNotConverged is matched by a *NotConvergedError.
	ErrNotConverged = errors.New("batch did not converge")
)

// NotConvergedError reports the batch that stopped a rollout: the devices
// that did not report the new values in time, and why.
type NotConvergedError struct {
	Batch   int // 1-based
	Batches int
	Timeout string
	Failed  []DeviceFailure
	// NotStarted are the devices of later batches, left unchanged.
	NotStarted int
}

func (e *NotConvergedError) Error() string {
	names := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		names[i] = f.Device + " (" + f.Reason + ")"
	}
	return fmt.Sprintf("batch %d of %d did not converge within %s: %s; stopped, %d device(s) in later batches left unchanged",
		e.Batch, e.Batches, e.Timeout, strings.Join(names, "; "), e.NotStarted)
}

// Is makes errors.Is(err, ErrNotConverged) true.
func (e *NotConvergedError) Is(target error) bool { return target == ErrNotConverged }
