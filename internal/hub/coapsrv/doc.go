// Package coapsrv serves the hub's TUF repository over CoAP (UDP, RFC 7252)
// for devices on constrained links: GET /tuf/metadata/{file} and
// /tuf/targets/{path...}, the same files and the same path rules as the
// HTTP endpoints, read through the ota service's Open methods.
//
// Responses are block-wise (Block2, RFC 7959) and stateless: every request
// names the block it wants, the server reads that block from the file and
// keeps nothing between requests, so a device resumes a download by asking
// for the block after its checkpoint, and a 512 MiB artifact costs the hub
// one block of memory per request.
//
// Devices authenticate with their id and MQTT password in the URI-Query
// options d= and p=. Without DTLS they travel in clear, as with plain HTTP;
// the content is protected by TUF signatures either way.
//
// The package must not import the HTTP layer (httpapi), the broker or the
// store: it depends on the small interfaces declared in server.go.
package coapsrv
