// Package ingest turns telemetry payloads into stored points: it decodes and
// validates them with package protocol, counts every rejection by its code,
// and writes accepted batches with group commit, so one transaction (and one
// fsync) covers all batches that arrive while the previous one commits.
//
// Handle returns only after the batch is durable; the broker sends PUBACK
// after that, so an acknowledged point is never lost. It must not import the
// broker, HTTP or any storage engine.
package ingest
