// Package collect reads the agent's sensors: the Source interface, the
// simulated source Sim, and the Collector that runs every source in its own
// goroutine at its interval and sends the resulting points down a channel to
// package report.
//
// A Source that fails or panics affects only itself: errors are counted and
// logged, panics are recovered, counted and logged, and the source is tried
// again after a backoff. Points that would break the wire limits of package
// protocol are dropped here and counted, so the hub never has to reject them.
//
// It imports the standard library, package protocol and the generated wire
// types only; it knows nothing about batching, queues or MQTT.
package collect
