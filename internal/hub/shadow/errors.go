package shadow

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors, matched with errors.Is. Every error the Service returns
// for a request it refuses is a *Rejection that matches one of them.
var (
	ErrInvalid           = errors.New("invalid shadow request")               // 400
	ErrNotFound          = errors.New("shadow not found")                     // 404
	ErrVersionConflict   = errors.New("shadow version conflict")              // 409
	ErrTooLarge          = errors.New("shadow request or document too large") // 413
	ErrUnsupportedCoding = errors.New("shadow payload is not UTF-8")          // 415
)

// Rejection is a refused shadow request. Code is the HTTP status that AWS
// IoT uses for it; Message is the AWS-compatible text that goes into the
// …/rejected payload (and the REST error message).
type Rejection struct {
	Code    int
	Message string
}

func (r *Rejection) Error() string { return fmt.Sprintf("%d: %s", r.Code, r.Message) }

// Is makes errors.Is(err, ErrInvalid) (and the others) true for a
// Rejection with the matching code.
func (r *Rejection) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return r.Code == http.StatusBadRequest
	case ErrNotFound:
		return r.Code == http.StatusNotFound
	case ErrVersionConflict:
		return r.Code == http.StatusConflict
	case ErrTooLarge:
		return r.Code == http.StatusRequestEntityTooLarge
	case ErrUnsupportedCoding:
		return r.Code == http.StatusUnsupportedMediaType
	}
	return false
}

func reject(code int, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The AWS IoT messages for the common rejections.
const (
	msgInvalidJSON     = "Invalid JSON"
	msgMissingState    = "Missing required node: state"
	msgStateNotObject  = "State node must be an object"
	msgInvalidVersion  = "Invalid version"
	msgInvalidToken    = "Invalid clientToken"
	msgVersionConflict = "Version conflict"
	msgTooLarge        = "The payload exceeds the maximum size allowed"
	msgEncoding        = "Unsupported documented encoding; supported encoding is UTF-8"
	msgInternal        = "Internal service failure"
)

// codeOf returns the HTTP status and AWS message of err: a Rejection's own,
// else 500.
func codeOf(err error) (int, string) {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Code, r.Message
	}
	return http.StatusInternalServerError, msgInternal
}
