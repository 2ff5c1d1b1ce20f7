package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/outpost-edge/outpost/discovery"
)

// runServer serves echo on --listen, registers it in the hub's registry
// with a TTL, keeps it alive, and deregisters when ctx ends.
func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", "", "the hub's gRPC address, host:port (required)")
	token := fs.String("token", os.Getenv("OUTPOST_TOKEN"), "API token from `outpost login` (default $OUTPOST_TOKEN)")
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on; port 0 picks a free one")
	advertise := fs.String("advertise", "", "host to register (default: the --listen host)")
	name := fs.String("name", "echo", "service name to register")
	id := fs.String("id", "", "instance id (default: host:port)")
	tags := fs.String("tags", "", "comma-separated tags")
	ttl := fs.Duration("ttl", 10*time.Second, "registration TTL; renewed every TTL/3")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hub == "" {
		return errors.New("--hub is required")
	}
	if *ttl < 300*time.Millisecond {
		return fmt.Errorf("--ttl %s: want at least 300ms", *ttl)
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	defer lis.Close()
	host, portStr, _ := net.SplitHostPort(lis.Addr().String())
	port, _ := strconv.Atoi(portStr)
	if *advertise != "" {
		host = *advertise
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("listening on %s: pass --advertise with an address clients can reach", lis.Addr())
	}
	if *id == "" {
		*id = net.JoinHostPort(host, portStr)
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	client, err := discovery.New(*hub, *token, discovery.WithLogger(logger))
	if err != nil {
		return err
	}
	defer client.Close()

	reg := discovery.Registration{Service: *name, ID: *id, Address: host, Port: port, TTL: *ttl}
	if *tags != "" {
		reg.Tags = strings.Split(*tags, ",")
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, &echoServer{id: *id})

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil {
			return fmt.Errorf("serving: %w", err)
		}
		return nil
	})
	// Start all-or-nothing: a failed registration stops the server.
	in, err := client.Register(ctx, reg)
	if err != nil {
		srv.Stop()
		_ = g.Wait()
		return err
	}
	fmt.Fprintf(stdout, "serving %s instance %s on %s\n", in.Service, in.ID, in.Addr())

	g.Go(func() error { return keepAlive(gctx, client, reg, *ttl/3, logger) })
	g.Go(func() error {
		<-gctx.Done()
		// Deregister first so that clients stop picking this instance,
		// then let calls in flight finish.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := client.Deregister(dctx, reg.Service, reg.ID); err != nil {
			logger.Warn("deregistering failed; the TTL will expire it", "err", err)
		} else {
			fmt.Fprintf(stdout, "deregistered %s/%s\n", reg.Service, reg.ID)
		}
		srv.GracefulStop()
		return nil
	})
	return g.Wait()
}

// keepAlive renews the registration until ctx ends, registering it again
// when the hub has forgotten it (after the hub restarted, or the TTL lapsed
// while the hub was out of reach).
func keepAlive(ctx context.Context, client *discovery.Client, reg discovery.Registration, every time.Duration, logger *slog.Logger) error {
	for {
		err := client.KeepAlive(ctx, reg.Service, reg.ID, every)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, discovery.ErrNotRegistered) {
			return err
		}
		logger.Warn("the hub forgot the instance, registering again")
		if _, err := client.Register(ctx, reg); err != nil && ctx.Err() == nil {
			logger.Warn("registering again failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(every):
			}
		}
	}
}
