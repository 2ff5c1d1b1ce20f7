// Package agent wires the edge agent's pipeline together and runs it:
//
//	collect (sources, report strategies) → spool (on disk) → uplink (MQTT)
//
// plus the optional local HTTP server for /healthz and /metrics, and the
// shadow client (package shadow), whose desired settings the agent applies
// hot to the collector, the spool, the uplink and the log level; the jobs
// runner with its OTA handlers (otajobs.go); and the workloads reconciler
// (workloads.go), which runs the services of the device's "workloads"
// shadow under a workload.Supervisor and reports their state. A reading
// is accepted once the spool has committed it, and leaves the spool once
// the broker has acknowledged it. Later stages start first and stop last:
// the collector stops first (its last readings are still stored), then the
// uplink, after a short grace to publish what waits while connected, then
// the spool's writer; what was not delivered stays in the spool for the
// next run.
//
// Everything an Agent needs comes from its Config and Options: no globals,
// no os.Exit, no flags, so one process can run many agents (outpost demo,
// outpost sim). It must not import internal/hub, Gin, gRPC, SQL drivers or
// the Prometheus client; cmd/outpost-agent's deps test checks that.
package agent
