package jobs

import "errors"

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("jobs runner: Run called twice")
