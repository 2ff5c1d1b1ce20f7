// Package join provisions a device: it trades a one-time join token for the
// device's identity and MQTT credentials at the hub's POST /api/v1/join and
// returns them as an agent configuration.
//
// It imports the standard library and agent/config only.
package join
