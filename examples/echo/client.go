package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outpost-edge/outpost/discovery"
)

// runClient calls the echo service --count times through "outpost:///NAME"
// with round robin and prints which instance answered each call.
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", "", "the hub's gRPC address, host:port (required)")
	token := fs.String("token", os.Getenv("OUTPOST_TOKEN"), "API token from `outpost login` (default $OUTPOST_TOKEN)")
	name := fs.String("name", "echo", "service name to call")
	tag := fs.String("tag", "", "only call instances with this tag")
	count := fs.Int("count", 10, "number of calls")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between calls")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hub == "" {
		return errors.New("--hub is required")
	}

	client, err := discovery.New(*hub, *token)
	if err != nil {
		return err
	}
	defer client.Close()

	target := "outpost:///" + url.PathEscape(*name)
	if *tag != "" {
		target += "?tag=" + url.QueryEscape(*tag)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithResolvers(discovery.NewResolverBuilder(client)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", target, err)
	}
	defer conn.Close()

	failed := 0
	for i := 1; i <= *count; i++ {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		answer, err := echo(cctx, conn, fmt.Sprintf("hello %d", i))
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failed++
			fmt.Fprintf(stdout, "call %d: failed: %v\n", i, err)
		default:
			fmt.Fprintf(stdout, "call %d: %s\n", i, answer)
		}
		if i < *count {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*interval):
			}
		}
	}
	if failed == *count {
		return fmt.Errorf("all %d calls to %s failed", failed, target)
	}
	return nil
}
