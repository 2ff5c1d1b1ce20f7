package registry

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound: no instance has this service and id.
	ErrNotFound = errors.New("no such instance")
	// ErrInvalid: the request is malformed. Register's error lists every
	// problem of the instance.
	ErrInvalid = errors.New("invalid registration")
)
