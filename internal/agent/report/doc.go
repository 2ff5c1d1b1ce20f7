// Package report decides, per source, when readings leave for the spool:
// a Strategy is offered each read's points and returns those to append now.
// Realtime passes everything on at once; Batch holds points until it has
// max_points or the oldest has waited max_delay; OnChange passes a value
// only when it moved past a deadband (absolute or percent) since the last
// one it passed, or when max_interval has gone by (a heartbeat, so a flat
// signal still shows up). Flush returns whatever is held, at shutdown.
//
// Strategies are used from a single goroutine each and need no locking. The
// package imports the standard library, the generated wire types and
// package protocol only; it knows nothing of the spool or MQTT.
package report
