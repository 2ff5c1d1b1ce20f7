// Package slots updates the agent binary A/B style with automatic rollback.
//
// The installed binary (the one the init system starts, e.g.
// /usr/local/bin/outpost-agent) is never modified. New versions live in two
// slots under the data directory:
//
//	<data>/slots/a/outpost-agent
//	<data>/slots/b/outpost-agent
//	<data>/slots/state.json   which slot is active, the pending trial, the last result
//	<data>/slots/lock         serialises the read-modify-write of state.json
//
// Stage copies a new binary into the slot that is not active, checks that
// it runs on this machine and reports the expected version, and records it
// as a pending trial. The running agent then exits with RestartExitCode and
// the init system starts it again. On that start, Launch (called first
// thing by `outpost-agent run`) counts the start in state.json and execs
// the trial slot with OUTPOST_AGENT_TRIAL=1. The trial calls AwaitCommit:
// once the agent is healthy (connected to the hub and its online status
// acknowledged) Commit makes the slot active; if the commit window passes
// first it rolls back itself and exits with TrialExpiredExitCode. When the
// trial keeps dying, Launch rolls back after MaxStarts starts, or once the
// window has passed by the wall clock. Rolling back only drops the trial:
// the active slot (or the installed binary) runs again.
//
// Every state change is one atomic write of state.json (temporary file,
// fsync, rename, fsync of the directory), and a slot binary is complete and
// synced before state.json names it, so a power loss or a kill -9 at any
// point leaves either the previous or the next state, both of which boot a
// working agent. A missing or unreadable state.json, or a missing slot
// binary, means: run the installed binary. docs/agent-update.md describes
// the state machine and what happens on power loss at each step.
//
// It must not import internal/hub, Gin, gRPC, SQL drivers, mochi,
// Prometheus or cobra; cmd/outpost-agent's deps test checks that.
package slots
