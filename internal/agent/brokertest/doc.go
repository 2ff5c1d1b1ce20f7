// Package brokertest runs an in-process MQTT v5 broker (mochi-mqtt) on a
// loopback port for the agent's tests, and records what devices publish.
//
// It is imported only from _test.go files: the agent binary must not
// contain a broker (cmd/outpost-agent's deps test checks that).
package brokertest
