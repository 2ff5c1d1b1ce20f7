// Command echo is a tiny gRPC echo service and client that find each other
// through the hub's service registry (package discovery).
//
//	echo server --hub HUB --token T --listen 127.0.0.1:0 --name echo
//	echo client --hub HUB --token T --name echo --count 10
//
// The server registers itself with a TTL, renews it, and deregisters on
// SIGINT or SIGTERM. The client dials "outpost:///NAME" with round robin and
// prints which instance answered each call.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// run dispatches to the server or client subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: echo server|client [flags] (see --help of each)")
	}
	switch args[0] {
	case "server":
		return runServer(ctx, args[1:], stdout, stderr)
	case "client":
		return runClient(ctx, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q: want server or client", args[0])
	}
}
