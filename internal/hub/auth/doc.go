// Package auth holds the hub's credentials primitives: admin password hashes
// (bcrypt), API tokens (HS256 JWTs), device secrets and one-time join tokens
// (random, stored only as SHA-256 hashes).
//
// It knows nothing of HTTP, MQTT or storage engines.
package auth
