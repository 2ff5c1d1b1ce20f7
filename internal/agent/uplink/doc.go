// Package uplink is the agent's MQTT v5 connection to the hub's broker,
// built on autopaho: it connects and reconnects (exponential backoff with
// full jitter), announces the device with a retained birth message on every
// connection and leaves a retained last will, and publishes the telemetry
// batches it takes from a Queue one at a time, oldest first.
//
// Delivery rules: a batch is removed from the queue only when the broker
// acknowledged it (or, at QoS 0, when it was written) or rejected it with a
// failure reason code (>= 0x80), which is logged and counted and never
// retried, since the same payload would be rejected again. A publish that
// fails because the connection dropped is retried, after reconnecting,
// before any later batch, so batches arrive in order; the hub drops the
// duplicates a retry may cause by (device, seq).
//
// It imports autopaho, package protocol and the generated wire types; it
// knows nothing about sources, batching or the configuration file.
package uplink
