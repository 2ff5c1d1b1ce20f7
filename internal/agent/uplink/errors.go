package uplink

import "errors"

// ErrNotConnected is returned by Publish while no connection is up.
var ErrNotConnected = errors.New("not connected to the broker")
