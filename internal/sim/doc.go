// Package sim is `outpost sim`: a fleet of simulated devices, each with its
// own MQTT connection to a hub, used as a load generator and to measure the
// device shadow round trip and the telemetry publish latency (publish to
// acknowledgement, which the hub sends only after the commit).
//
// Every simulated device is enrolled through the hub's REST API and joins
// with the agent's own join code, so it holds real per-device credentials
// and is subject to the same authentication and topic ACL as a real agent.
// It speaks the wire protocol through package protocol: compact protobuf
// telemetry batches with simulated sensor values (the agent's sim source),
// and the AWS-style shadow topics, reporting every delta it receives as a
// device would once it has applied it.
//
// Unlike the agent, a simulated device keeps no spool: points it cannot
// publish are counted as failed, not retried. That keeps one device to a
// connection and a few goroutines, so tens of thousands fit in one process.
package sim
