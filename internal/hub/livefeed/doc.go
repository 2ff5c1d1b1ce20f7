// Package livefeed fans stored telemetry out to in-process subscribers (the
// gRPC TelemetryService.Subscribe streams). Ingest publishes each batch
// after it is committed; each subscriber has a bounded buffer, and a
// subscriber that falls behind loses points (counted, and told) instead of
// slowing ingest.
//
// It imports only package store (for store.Point); it must not import
// ingest, the broker or any API package.
package livefeed
