// Command outpost-agent is the Outpost edge agent: it joins a hub once,
// then reads the device's sensors and sends their telemetry to the hub over
// MQTT, buffering while the link is down.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is the agent version, set at build time with
// -ldflags "-X main.version=1.2.3".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
