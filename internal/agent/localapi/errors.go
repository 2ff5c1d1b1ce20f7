package localapi

import "errors"

// ErrClosed is returned by the state store once Close has run.
var ErrClosed = errors.New("localapi: closed")

// ErrNoCache is returned by a service lookup when the hub cannot be asked
// and no earlier answer is cached.
var ErrNoCache = errors.New("no cached answer")
