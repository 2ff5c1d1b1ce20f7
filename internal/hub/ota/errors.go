package ota

import "errors"

// Sentinel errors of the repository service; httpapi maps them to statuses
// and stable error codes.
var (
	// ErrNotInitialised: no root metadata has been uploaded yet.
	ErrNotInitialised = errors.New(`TUF keys are not initialised on this hub: run "outpost keys init"`)
	// ErrInvalid: a request is malformed (bad name, version, role …).
	ErrInvalid = errors.New("invalid request")
	// ErrRootRejected: an uploaded root fails signature, version or key checks.
	ErrRootRejected = errors.New("root metadata rejected")
	// ErrRootVersion: an uploaded root does not have the next version number.
	ErrRootVersion = errors.New("root metadata has the wrong version")
	// ErrConflict: the artifact exists with different content.
	ErrConflict = errors.New("artifact exists with different content")
	// ErrTooLarge: the artifact is over the size limit.
	ErrTooLarge = errors.New("artifact too large")
	// ErrNotFound: no such metadata file or target.
	ErrNotFound = errors.New("not found")
)
