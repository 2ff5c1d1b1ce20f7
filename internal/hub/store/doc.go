// Package store defines the records the hub keeps (users, devices, join
// tokens, telemetry points) and the errors every store engine returns.
//
// Engines live in sub-packages (sqlite; postgres later) and satisfy the small
// interfaces that the hub's services declare for what they use. This package
// must not import any engine, driver or service.
package store
