// Package shadow is the agent's side of the device shadow (docs/shadow.md,
// docs/agent-shadow.md): it maps the desired-state keys the agent
// understands onto its running configuration (Resolve), reports what it
// applied and what it refused (Reported), persists the last applied desired
// state in the data directory (Load, Save) and talks to the hub over the
// AWS-style shadow topics (Client).
//
// It owns no live component: applying Settings to the collector, spool,
// uplink and logger is the agent's job, through the Apply callback. It must
// not import the agent, uplink, spool or collect packages.
package shadow
