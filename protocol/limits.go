package protocol

import "time"

// Limits on everything a device sends. The hub rejects (and counts) any
// payload that exceeds them; the agent never produces one.
const (
	// MaxPayloadBytes is the largest telemetry payload, in bytes, before decoding.
	MaxPayloadBytes = 256 << 10
	// MaxPointsPerBatch is the most points one TelemetryBatch may carry.
	MaxPointsPerBatch = 5000
	// MaxNameLen is the longest sensor name, in bytes.
	MaxNameLen = 128
	// MaxDeviceIDLen is the longest device id, in bytes.
	MaxDeviceIDLen = 64
	// MaxStringValueLen is the longest string value of a point, in bytes.
	MaxStringValueLen = 1024
	// MaxClockSkew is how far in the future a point's timestamp may be.
	MaxClockSkew = 24 * time.Hour
)

// minTimestampMs is 2000-01-01T00:00:00Z: earlier timestamps are clock errors.
const minTimestampMs = 946684800000

// ValidDeviceID reports whether id is a usable device id: 1 to MaxDeviceIDLen
// bytes of ASCII letters, digits, '-', '_' and '.', not starting with '.' or
// '-'. Such an id is safe in MQTT topics (no '/', '+', '#'), URLs and file names.
func ValidDeviceID(id string) error {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return errorf(CodeBadDeviceID, "device id must be 1 to %d characters, got %d", MaxDeviceIDLen, len(id))
	}
	if id[0] == '.' || id[0] == '-' {
		return errorf(CodeBadDeviceID, "device id %q must start with a letter, digit or '_'", id)
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return errorf(CodeBadDeviceID, "device id %q has %q at byte %d; allowed are letters, digits, '-', '_' and '.'", id, id[i], i)
		}
	}
	return nil
}

// ValidSensorName reports whether name is a usable sensor name: 1 to
// MaxNameLen bytes of ASCII letters, digits, '-', '_', '.', ':' and '/'.
func ValidSensorName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return errorf(CodeBadName, "sensor name must be 1 to %d characters, got %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isIDByte(c) && c != ':' && c != '/' {
			return errorf(CodeBadName, "sensor name %q has %q at byte %d; allowed are letters, digits, '-', '_', '.', ':' and '/'", name, c, i)
		}
	}
	return nil
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}
