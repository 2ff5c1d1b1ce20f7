package store

import "errors"

// Errors every store engine returns, matched with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrTokenUnknown = errors.New("join token unknown")
	ErrTokenUsed    = errors.New("join token already used")
	ErrTokenExpired = errors.New("join token expired")
	// ErrVersionConflict: a compare-and-set write found another version
	// stored than the one it expected.
	ErrVersionConflict = errors.New("version conflict")
)
