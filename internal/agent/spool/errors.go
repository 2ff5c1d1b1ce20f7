package spool

import "errors"

// ErrClosed is returned by operations on a spool that was closed.
var ErrClosed = errors.New("spool is closed")

// ErrStopped is returned by Append once Run has returned: nothing commits
// new points any more.
var ErrStopped = errors.New("spool writer stopped")

// ErrTooLarge is returned by Append, with the block overflow policy, for
// points that would not fit into the spool even when it is empty.
var ErrTooLarge = errors.New("points are larger than the spool's max bytes")

// corruptError says why a spool file was found corrupt.
type corruptError struct{ reason string }

func (e *corruptError) Error() string { return "corrupt spool file: " + e.reason }
