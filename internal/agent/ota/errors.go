package ota

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Reason is a stable, machine-readable error code. A job reports it as
// statusDetails.reason; never match on an error's text instead.
type Reason string

// The reason codes. They are part of the wire contract: add, never rename.
const (
	// ReasonUnsigned: the requested artifact is not in the signed targets
	// metadata, so to this device it is arbitrary software.
	ReasonUnsigned Reason = "unsigned"
	// ReasonBadSignature: metadata is not signed by the threshold of keys
	// the trusted root names (wrong key, forged or missing signatures).
	ReasonBadSignature Reason = "bad_signature"
	// ReasonTampered: bytes do not match the signed length or hashes.
	ReasonTampered Reason = "tampered"
	// ReasonRollback: a metadata version older than one already trusted,
	// or an artifact version not newer than the installed one.
	ReasonRollback Reason = "rollback"
	// ReasonExpired: signed metadata is past its expiry (freeze attack, or
	// a hub that stopped re-signing its timestamp).
	ReasonExpired Reason = "expired"
	// ReasonMixAndMatch: metadata versions disagree with what the
	// timestamp or snapshot committed to.
	ReasonMixAndMatch Reason = "mix_and_match"
	// ReasonTooLarge: the server sent more than the signed or configured
	// maximum length (endless data).
	ReasonTooLarge Reason = "too_large"
	// ReasonTooSlow: the download fell below the minimum throughput or
	// exceeded the maximum download time (slow retrieval).
	ReasonTooSlow Reason = "too_slow"
	// ReasonNotFound: the hub answered 404.
	ReasonNotFound Reason = "not_found"
	// ReasonUnauthorized: the hub refused the device's credentials.
	ReasonUnauthorized Reason = "unauthorized"
	// ReasonInvalid: signed metadata or a request is malformed (custom
	// metadata that does not match the path, an unknown artifact type, no
	// sha256 hash, a bad argument).
	ReasonInvalid Reason = "invalid"
	// ReasonInstall: the file install or its post-install command failed.
	ReasonInstall Reason = "install_failed"
	// ReasonCanceled: the context was canceled.
	ReasonCanceled Reason = "canceled"
	// ReasonIO: network or disk failure; retrying later may succeed.
	ReasonIO Reason = "io"
)

// Error is the error type every exported function of this package returns.
type Error struct {
	// Reason is the stable code.
	Reason Reason
	// Err is the cause, for humans and for errors.Is/As.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "ota: " + string(e.Reason)
	}
	return fmt.Sprintf("ota: %s: %v", e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason code of err: the Reason of the outermost
// *Error in its chain, or ReasonIO for any other non-nil error.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Reason
	}
	return ReasonIO
}

// newErr returns an *Error with reason and a formatted cause.
func newErr(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// classifyTUF maps an error from go-tuf (or from the fetcher under it) to a
// reason. go-tuf's ErrBadVersionNumber means either that a version went
// backwards or that it disagrees with the one committed to; the caller
// tells which (tufFetcher.badVersionReason) and passes it as badVersion,
// so no message text is matched.
func classifyTUF(err error, badVersion Reason) Reason {
	var oe *Error
	switch {
	case errors.As(err, &oe):
		return oe.Reason
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTooSlow
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return ReasonExpired
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return ReasonBadSignature
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return badVersion
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return ReasonTampered
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return ReasonTooLarge
	}
	var he *metadata.ErrDownloadHTTP
	if errors.As(err, &he) {
		return httpReason(he.StatusCode)
	}
	var ne net.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ne), errors.As(err, &pe):
		return ReasonIO
	case errors.Is(err, &metadata.ErrRepository{}), errors.Is(err, &metadata.ErrValue{}),
		errors.Is(err, &metadata.ErrType{}):
		// Malformed or inconsistent metadata (wrong type, missing role,
		// unparsable JSON).
		return ReasonInvalid
	}
	return ReasonIO
}

// httpReason maps an unexpected HTTP status to a reason.
func httpReason(code int) Reason {
	switch code {
	case 404:
		return ReasonNotFound
	case 401, 403:
		return ReasonUnauthorized
	}
	return ReasonIO
}
