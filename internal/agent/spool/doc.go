// Package spool is the agent's durable store-and-forward queue: the points
// the sources read wait here, on disk, until the hub's broker has
// acknowledged them.
//
// The spool is one bbolt file. Every point is a record keyed by its
// sequence number (seq), which the spool assigns inside the transaction
// that stores the point: per device, strictly increasing, persisted, never
// reused, and dense for committed points, so after a crash the file holds
// exactly the seqs 1..N minus those delivered or dropped. Each record
// carries the time it was stored and a CRC-32C of key and value, so that a
// damaged record is noticed rather than sent.
//
// Writes go through one writer goroutine (Run) that groups them: Append
// hands over points and returns once the transaction holding them is
// committed and synced, and one transaction covers every Append that
// arrived within Options.CommitInterval or until Options.CommitPoints
// points wait (group commit). Deletions of acknowledged batches ride along
// in the same transactions.
//
// The spool is bounded by Options.MaxBytes and Options.MaxAge, which
// SetLimits changes, with Overflow, while it runs. When full it
// either deletes the oldest points (OverflowDropOldest, counted, persisted,
// logged at most every 10 seconds) or makes Append wait for room
// (OverflowBlock).
//
// A file that cannot be opened or fails the structural check at Open (a
// bbolt error, a panic or memory fault while scanning, a bad checksum, seqs
// out of order) is moved aside as "<name>.corrupt-<unix time>" and a fresh
// spool is started, with an ERROR log and a counter; Open never fails on a
// corrupt file, so the agent cannot crash-loop on one. Numbers are never
// reused across such a reset: the spool keeps a reserved ceiling of issued
// seqs in a small file outside the spool (Options.SeqFloorPath, written
// with atomicfile before any number above the old ceiling is used), and a
// fresh spool starts at that ceiling.
//
// It imports bbolt, protobuf, the generated wire types and atomicfile; it
// knows nothing about MQTT, sources or the configuration file.
package spool
