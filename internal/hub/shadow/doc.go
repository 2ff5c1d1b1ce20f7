// Package shadow owns the device shadow: the AWS IoT Device Shadow document
// semantics (merge patches with null deletes, per-leaf metadata, the delta
// between desired and reported, versions, limits) and the Service that
// gets, updates and deletes shadows for both the MQTT topics
// ($aws/things/{id}/shadow/…) and the REST API.
//
// The document rules are pure functions over decoded JSON (document.go) so
// that they can be tested exhaustively without a store. The Service reaches
// storage through the Store interface and announces accepted updates
// (update/delta, update/documents) through the Publisher interface, both
// declared here. It must not import the broker, HTTP/Gin or any storage
// engine.
package shadow
