// Package workload is the agent's process supervisor for deployed services
// ("the kubelet of a Raspberry Pi"). A Supervisor receives the desired set
// of workloads (Apply), starts each one as a real process in its own
// process group, restarts it with exponential backoff when it exits or
// fails its liveness check, applies resource limits (cgroup v2 when the
// agent may create child cgroups, a resident-memory watchdog otherwise), keeps its output
// in a bounded in-memory ring and a rotating file, and reports what it
// did (Status, Logs).
//
// The desired set is persisted to <data>/workloads/desired.json on every
// Apply, so an agent that restarts without a hub brings its workloads
// back by itself. Spec.Binary names an executable that is already on disk
// and verified (the OTA client put it there): this package copies nothing
// and downloads nothing.
//
// Files under <data>/workloads/: desired.json (0600: it holds the
// workloads' environment), <name>/log and <name>/log.1…log.3.
//
// It imports the standard library, golang.org/x/sys/unix and
// internal/atomicfile only. It must not import internal/hub, Gin, gRPC,
// SQL drivers, mochi, Prometheus or cobra; cmd/outpost-agent's deps test
// checks that.
package workload
