// Package report turns the stream of points from package collect into
// outpostv1.TelemetryBatch messages: at most MaxPoints points (and never more
// than protocol.MaxPayloadBytes encoded) or whatever arrived within MaxDelay
// of a batch's first point, whichever comes first.
//
// It also owns the device's sequence numbers. The hub stores each point
// once per (device, seq), so a number used twice would make the hub drop the
// second point silently. Seq therefore reserves numbers in blocks written to
// disk (with fsync) before any number of a block is used, and starts after a
// restart at the stored ceiling: numbers may be skipped, never reused.
//
// Batches go to a Sink: today the in-memory queue, later the durable spool.
// It imports the standard library, protobuf, package protocol, the
// generated wire types and atomicfile; it knows nothing about MQTT.
package report
