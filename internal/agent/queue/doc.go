// Package queue holds finished telemetry batches between package report,
// which puts them, and package uplink, which takes them out once the broker
// has acknowledged or rejected them.
//
// Memory is the bounded in-memory queue of this release: it loses its
// content when the agent stops, and when it is full it drops the oldest
// waiting batch and counts it. The durable spool that replaces it later
// implements the same two method sets (report.Sink and uplink.Queue).
//
// It imports the standard library and the generated wire types only.
package queue
