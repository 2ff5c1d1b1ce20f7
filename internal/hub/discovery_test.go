package hub_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/discovery"
	"github.com/outpost-edge/outpost/internal/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// echoInstance is a gRPC server registered in the hub's registry with a
// TTL it keeps renewing; its health service stands in for an echo
// service, and calls record which instance answered through the peer.
type echoInstance struct {
	id   string
	srv  *grpc.Server
	stop context.CancelFunc
	done chan struct{}
}

func startEcho(t *testing.T, c *discovery.Client, id string) *echoInstance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.Register(ctx, discovery.Registration{Service: "echo", ID: id, Address: "127.0.0.1", Port: port, TTL: 3 * time.Second}); err != nil {
		cancel()
		t.Fatalf("registering %s: %v", id, err)
	}
	e := &echoInstance{id: id, srv: srv, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		_ = c.KeepAlive(ctx, "echo", id, time.Second)
	}()
	t.Cleanup(e.kill)
	return e
}

// kill stops the server at once and stops renewing: a crash, as far as
// clients and the registry can tell.
func (e *echoInstance) kill() {
	e.stop()
	<-e.done
	e.srv.Stop()
}

// TestDiscoveryFailoverWithTheRealHub runs three instances registered in a
// real hub's registry over gRPC; a client balancing over outpost:///echo
// keeps succeeding when one is killed and picks up a fourth once it
// registers.
func TestDiscoveryFailoverWithTheRealHub(t *testing.T) {
	h := startGRPCHub(t)
	c, err := discovery.New(h.GRPCTarget(), h.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	insts := map[string]*echoInstance{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("echo-%d", i)
		insts[id] = startEcho(t, c, id)
	}
	conn, err := grpc.NewClient("outpost:///echo",
		grpc.WithResolvers(discovery.NewResolverBuilder(c)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	var mu sync.Mutex
	seen := map[string]int{}
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var p peer.Peer
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			return err
		}
		mu.Lock()
		seen[p.Addr.String()]++
		mu.Unlock()
		return nil
	}
	spread := func(want int) error {
		mu.Lock()
		clear(seen)
		mu.Unlock()
		for range 3 * want {
			if err := call(); err != nil {
				return err
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != want {
			return fmt.Errorf("calls reached %d instances (%v), want %d", len(seen), seen, want)
		}
		return nil
	}
	testutil.Eventually(t, 15*time.Second, func() error { return spread(3) })

	// Kill one; calls made from 2 s after the kill on all succeed.
	killed := time.Now()
	insts["echo-2"].kill()
	var failures int
	var lastFailure time.Time
	for time.Since(killed) < 4*time.Second {
		if err := call(); err != nil {
			failures++
			lastFailure = time.Now()
		}
	}
	if failures > 0 && lastFailure.Sub(killed) > 2*time.Second {
		t.Errorf("%d calls failed, the last %s after the kill; want none after 2s", failures, lastFailure.Sub(killed))
	}
	t.Logf("failover: %d failed calls, last %v after the kill", failures, lastFailure.Sub(killed))
	testutil.Eventually(t, 15*time.Second, func() error { return spread(2) })

	// A fourth registers and gets calls.
	startEcho(t, c, "echo-4")
	testutil.Eventually(t, 15*time.Second, func() error { return spread(3) })
}
