package deploy

import "errors"

// Sentinel errors, matched with errors.Is. An invalid spec is a
// deployspec.Problems error (errors.As) that also matches
// deployspec.ErrInvalid.
var (
	// ErrNotFound: no deployment has this name.
	ErrNotFound = errors.New("no such deployment")
	// ErrUnknownArtifact: the spec's artifact NAME@VERSION is not published.
	ErrUnknownArtifact = errors.New("artifact not published")
	// ErrArtifactType: the spec's artifact is published with a type other
	// than service.
	ErrArtifactType = errors.New("artifact is not of type service")
	// ErrDeviceNotFound: Logs was asked about a device the hub does not know.
	ErrDeviceNotFound = errors.New("no such device")
	// ErrDeviceOffline: Logs was asked about a device that is not connected.
	ErrDeviceOffline = errors.New("device is offline")
	// ErrDeviceTimeout: the device did not answer a log request in time.
	ErrDeviceTimeout = errors.New("device did not answer")
	// ErrNoService: the device answered that it runs no such service.
	ErrNoService = errors.New("device has no such service")
	// ErrLogsUnavailable: the service was built without a broker.
	ErrLogsUnavailable = errors.New("log requests are not available")
)
