package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code that crosses the wire (in MQTT
// reason strings, REST error bodies and metrics labels). Callers match codes
// with errors.Is, never by message text.
type Code string

// Error implements error.
func (c Code) Error() string { return string(c) }

// The codes a payload or name can be rejected with.
const (
	CodeTooLarge       Code = "payload_too_large"
	CodeMalformed      Code = "malformed_payload"
	CodeTooManyPoints  Code = "too_many_points"
	CodeEmptyBatch     Code = "empty_batch"
	CodeBadSeq         Code = "bad_seq"
	CodeBadName        Code = "bad_name"
	CodeBadValue       Code = "bad_value"
	CodeBadTimestamp   Code = "bad_timestamp"
	CodeDeviceMismatch Code = "device_mismatch"
	CodeBadTopic       Code = "bad_topic"
	CodeBadDeviceID    Code = "bad_device_id"
)

// Error is a rejection with a stable Code and a human-readable detail.
type Error struct {
	Code   Code
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Detail
}

// Is makes errors.Is(err, CodeX) true for an *Error carrying CodeX.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

func errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// CodeOf returns the Code carried by err (searching wrapped and joined
// errors), or "" when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return ""
}
