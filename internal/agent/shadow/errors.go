package shadow

import "errors"

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("shadow client: Run called twice")
