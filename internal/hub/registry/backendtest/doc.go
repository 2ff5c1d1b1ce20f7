// Package backendtest is the test suite every registry.Backend passes,
// run through a registry.Service: registration and resolution, TTL expiry
// and renewal, watches, hub-run checks and validation. It is imported by
// tests only.
package backendtest
