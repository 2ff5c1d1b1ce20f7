// Package localapi is the agent's local HTTP API for edge apps, a sidecar
// in the manner of Dapr: apps publish telemetry, read their configuration
// from the device shadow, look up the hub's services and keep key-value
// state without any MQTT code (docs/agent-api.md).
//
// It owns state.db, the apps' key-value store and the service lookup
// cache, opened on first use. It reaches the rest of the agent only
// through the small interfaces in Options: it must not import the agent,
// the uplink, the spool or any MQTT package.
package localapi
