// Package hub assembles the Outpost hub from its parts — store, broker,
// ingest, device and auth services, REST API — and runs them as one unit:
// starting is all-or-nothing, and shutdown stops the front doors (HTTP,
// MQTT) before the ingest writer drains.
package hub
