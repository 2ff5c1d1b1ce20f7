// Package protocol defines the wire contract between outpost-agent and the
// hub: MQTT topic names, payload codecs and the limits every input is held to.
//
// It imports only the standard library, the generated protobuf types in
// gen/outpost/v1 and the pure-Go zstd codec (compressed batches are part of
// the wire format, so both ends must agree on it and on its limits), so that
// both binaries and third-party Go code can use it without pulling in
// anything heavy. It must not import any other package of this module.
package protocol
