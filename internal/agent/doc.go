// Package agent wires the edge agent's pipeline together and runs it:
//
//	collect (sources) → report (batches, seq) → queue → uplink (MQTT)
//
// plus the optional local HTTP server for /healthz and /metrics. Later
// stages start first and stop last, so the points in flight at shutdown
// reach the queue; when the durable spool lands it replaces the in-memory
// queue between report and uplink.
//
// Everything an Agent needs comes from its Config and Options: no globals,
// no os.Exit, no flags, so one process can run many agents (outpost demo,
// outpost sim). It must not import internal/hub, Gin, gRPC, SQL drivers or
// the Prometheus client; cmd/outpost-agent's deps test checks that.
package agent
