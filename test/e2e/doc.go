// Package e2e holds end-to-end tests that build the real outpost and
// outpost-agent binaries and run them as a user would, against real
// processes and real third-party clients (mosquitto_pub).
package e2e
