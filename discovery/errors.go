package discovery

import "errors"

var (
	// ErrInvalidArgument is returned, wrapped, for a call the client refuses
	// before it reaches the hub (an empty service name, a non-positive
	// interval).
	ErrInvalidArgument = errors.New("invalid argument")

	// ErrNotRegistered is returned, wrapped, by KeepAlive when the hub no
	// longer knows the instance (its TTL lapsed and it was removed, or it was
	// deregistered). Register it again.
	ErrNotRegistered = errors.New("instance not registered")

	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("discovery client closed")
)
