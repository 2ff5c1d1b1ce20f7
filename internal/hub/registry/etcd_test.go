package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/registry/backendtest"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// TestEtcdBackend runs the suite against a real etcd server it starts
// (the etcd-server package's /usr/bin/etcd), each subtest under its own
// key prefix.
func TestEtcdBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd server")
	}
	endpoint := startEtcd(t)
	var mu sync.Mutex
	n := 0
	backendtest.Run(t, func(t *testing.T) registry.Backend {
		mu.Lock()
		n++
		prefix := fmt.Sprintf("/test/%d", n)
		mu.Unlock()
		b, err := registry.NewEtcdBackend(t.Context(), []string{endpoint}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestEtcdBackendUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if b, err := registry.NewEtcdBackend(ctx, []string{addr}, "/x"); err == nil {
		b.Close()
		t.Fatal("NewEtcdBackend succeeded against a closed port")
	}
}

// startEtcd starts etcd on free loopback ports with a temporary data
// directory, waits until it answers and stops it when the test ends. It
// returns the client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcd is not installed (Debian package etcd-server); CI must run this test")
		}
		t.Skip("etcd is not installed (Debian package etcd-server)")
	}
	client, peer := "http://"+freePort(t), "http://"+freePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--name", "test",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("etcd output:\n%s", out.String())
		}
	})
	testutil.Eventually(t, 20*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("etcd exited: %v\n%s", err, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		b, err := registry.NewEtcdBackend(ctx, []string{client}, "/probe")
		if err != nil {
			return err
		}
		return b.Close()
	})
	return client
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestEtcdLeaseExpiry checks that etcd itself deletes a TTL instance whose
// lease ran out, without the sweeper.
func TestEtcdLeaseExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd server")
	}
	endpoint := startEtcd(t)
	b, err := registry.NewEtcdBackend(t.Context(), []string{endpoint}, "/lease")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	svc, err := registry.New(registry.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	in, err := svc.Register(t.Context(), registry.Instance{Service: "api", Address: "10.0.0.1", Port: 80, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), in.Service, in.ID); err != nil {
		t.Fatalf("Get right after Register: %v", err)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		_, err := b.Get(t.Context(), in.Service, in.ID)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("instance still in etcd (%v)", err)
	})
	if _, err := svc.Renew(t.Context(), in.Service, in.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Renew after the lease expired = %v, want ErrNotFound", err)
	}
}
