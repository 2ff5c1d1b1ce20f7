// Package broker runs the hub's embedded MQTT v5 broker (mochi-mqtt) and
// enforces Outpost's rules on it: devices authenticate with their id as
// username and client id and their secret as password; a device may publish
// and subscribe only under its own topics; telemetry is handed to ingest
// before the PUBACK is sent; connects and disconnects update presence.
//
// It depends on the domain services only through the interfaces declared in
// broker.go.
package broker
