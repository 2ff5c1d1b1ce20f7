// Package uplink is the agent's MQTT v5 connection to the hub's broker,
// built on autopaho: it connects and reconnects (exponential backoff with
// full jitter), announces the device with a retained online status on
// every connection and every status interval (carrying the spool's depth,
// drops and backlog age), leaves a retained offline last will, and
// publishes the points waiting in the spool. It also carries the device's
// other MQTT traffic for its callers: Config.Subscriptions are subscribed
// on every connection (the agent's shadow topics) and Publish sends a QoS 1
// message on the current connection.
//
// Delivery rules: points are read from the spool as batches of consecutive
// seqs and a batch is deleted from the spool only when the broker
// acknowledged it (PUBACK at QoS 1, PUBCOMP at QoS 2; at QoS 0 once it is
// written) or refused it with a failure reason code (>= 0x80), which is
// logged and counted and never retried, since the same payload would be
// refused again. A batch whose publish the lost connection interrupted is
// simply still in the spool.
//
// Each connection runs two lanes. The points that waited before it came up
// (the backlog) are published oldest first at Config.DrainRate, so that a
// fleet reconnecting at once does not flatten the hub; the points stored
// after it came up are published as they arrive, so live data is not held
// behind the backlog. Within a lane batches are published one at a time,
// in seq order; the hub stores each (device, seq) once, so the interleaving
// of the lanes and the duplicates a retry may cause are harmless.
//
// It imports autopaho, x/time/rate, package protocol and the generated wire
// types; it knows nothing about sources, the spool's file or the
// configuration file.
package uplink
