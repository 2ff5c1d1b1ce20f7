// Package rollout applies a desired-state change to a group of devices in
// batches ("rolling"): it patches the desired state of one batch, waits until
// every device of the batch reports the new values, pauses, and goes on with
// the next batch. It stops at the first batch that does not converge within
// a timeout and says which devices did not.
//
// It owns batch sizing and the convergence rule. It talks to the hub only
// through the small API interface, so it can drive the REST API (the CLI
// does) or a fake in tests. It must not import Gin, cobra or the hub's
// packages.
package rollout
