package device

import "errors"

// Sentinel errors; the REST adapter maps them to status codes.
var (
	ErrInvalid = errors.New("invalid input")
)
