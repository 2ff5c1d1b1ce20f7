// Package httpapi is the hub's REST adapter (Gin + JWT): it decodes and
// validates requests, calls the domain services and encodes their answers
// and errors as documented in docs/api.md. It holds no domain logic and
// reaches storage only through the services' interfaces declared here.
package httpapi
