package jobs

import (
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/protocol"
)

// Sentinel errors, matched with errors.Is. Every error the Service returns
// for a request it refuses is a *Rejection that matches one of them.
var (
	ErrInvalid           = errors.New("invalid jobs request")                 // InvalidRequest
	ErrNotFound          = errors.New("job or job execution not found")       // ResourceNotFound
	ErrInvalidTransition = errors.New("invalid job execution transition")     // InvalidStateTransition
	ErrVersionMismatch   = errors.New("job execution version mismatch")       // VersionMismatch
	ErrExists            = errors.New("job already exists")                   // Create only
	ErrRunTwice          = errors.New("jobs service Run called twice")        // Run only
	errUnchanged         = errors.New("job execution needs no change (skip)") // internal
)

// Rejection is a refused jobs request: the AWS IoT Jobs code, a message,
// and the execution's state when the state caused the refusal.
type Rejection struct {
	Code    protocol.JobsErrorCode
	Message string
	State   *protocol.JobExecutionState
	exists  bool // ErrExists rather than ErrInvalid
}

func (r *Rejection) Error() string { return string(r.Code) + ": " + r.Message }

// Is makes errors.Is(err, ErrInvalid) (and the others) true for a
// Rejection with the matching code.
func (r *Rejection) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return r.Code == protocol.JobsInvalidRequest && !r.exists
	case ErrExists:
		return r.exists
	case ErrNotFound:
		return r.Code == protocol.JobsResourceNotFound
	case ErrInvalidTransition:
		return r.Code == protocol.JobsInvalidStateTransition
	case ErrVersionMismatch:
		return r.Code == protocol.JobsVersionMismatch
	}
	return false
}

func reject(code protocol.JobsErrorCode, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}
}

// codeOf returns the code and message of err: a Rejection's own, else
// InternalError.
func codeOf(err error) (protocol.JobsErrorCode, string, *protocol.JobExecutionState) {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Code, r.Message, r.State
	}
	return protocol.JobsInternalError, "Internal service failure", nil
}
