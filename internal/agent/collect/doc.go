// Package collect reads the agent's sensors: the Source interface, the
// sources (Sim, File, Exec, HTTP, System, Modbus), FromConfig that builds
// them from agent.yaml, and the Collector that runs every source in its own
// goroutine at its interval, passes each read through the source's report
// strategy and appends the result to a Sink (the spool).
//
// Reads across all sources share a bounded pool (Options.MaxConcurrentPolls)
// and each read has a deadline of at most the source's interval, so a slow
// source delays only itself. A Source that fails or panics affects only
// itself: errors are counted and logged, panics are recovered, counted and
// logged, and the source is tried again after a backoff. Points that would
// break the wire limits of package protocol are dropped here and counted,
// so the hub never has to reject them.
//
// It imports the standard library, package protocol, the generated wire
// types, the agent's config and report packages and the Modbus client
// library; it knows nothing about spooling, queues or MQTT.
package collect
