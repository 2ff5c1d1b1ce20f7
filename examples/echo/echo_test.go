package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registry is a minimal in-memory RegistryService for one test.
type registry struct {
	apiv1.UnimplementedRegistryServiceServer
	mu        sync.Mutex // guards the fields below
	instances map[string]*apiv1.Instance
	changed   chan struct{} // closed and replaced on every change
}

func (r *registry) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer tok" {
		return status.Error(codes.Unauthenticated, "bad token")
	}
	return nil
}

func (r *registry) set(key string, in *apiv1.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in == nil {
		delete(r.instances, key)
	} else {
		r.instances[key] = in
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *registry) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for _, in := range r.instances {
		out = append(out, in.GetId())
	}
	return out
}

func (r *registry) Register(ctx context.Context, req *apiv1.RegisterRequest) (*apiv1.Instance, error) {
	if err := r.authorize(ctx); err != nil {
		return nil, err
	}
	in := proto.Clone(req.GetInstance()).(*apiv1.Instance)
	in.Health = apiv1.Health_HEALTH_PASSING
	r.set(in.GetService()+"/"+in.GetId(), in)
	return in, nil
}

func (r *registry) Renew(ctx context.Context, req *apiv1.RenewRequest) (*apiv1.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[req.GetService()+"/"+req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such instance")
	}
	return in, nil
}

func (r *registry) Deregister(ctx context.Context, req *apiv1.DeregisterRequest) (*apiv1.DeregisterResponse, error) {
	r.set(req.GetService()+"/"+req.GetId(), nil)
	return &apiv1.DeregisterResponse{}, nil
}

func (r *registry) Watch(req *apiv1.ResolveRequest, stream apiv1.RegistryService_WatchServer) error {
	if err := r.authorize(stream.Context()); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		resp := &apiv1.ResolveResponse{}
		for _, in := range r.instances {
			if in.GetService() == req.GetService() {
				resp.Instances = append(resp.Instances, in)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServersAndClient runs two servers and a client against an in-process
// registry: both servers answer, and both deregister when stopped.
func TestServersAndClient(t *testing.T) {
	reg := &registry{instances: map[string]*apiv1.Instance{}, changed: make(chan struct{})}
	srv := grpc.NewServer()
	apiv1.RegisterRegistryServiceServer(srv, reg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	hub := lis.Addr().String()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			errs <- run(ctx, []string{"server", "--hub", hub, "--token", "tok", "--name", "echo", "--ttl", "1s"}, &out, &errOut)
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if ids := reg.ids(); len(ids) != 2 {
			return fmt.Errorf("registered %v", ids)
		}
		return nil
	})
	ids := reg.ids()

	var clientOut syncBuffer
	err = run(t.Context(), []string{"client", "--hub", hub, "--token", "tok", "--name", "echo", "--count", "6", "--interval", "20ms"}, &clientOut, &errOut)
	if err != nil {
		t.Fatalf("client: %v\n%s", err, errOut.String())
	}
	got := clientOut.String()
	if n := strings.Count(got, "failed"); n != 0 {
		t.Errorf("%d calls failed:\n%s", n, got)
	}
	for _, id := range ids {
		// Round robin alternates once both connections are up; the first
		// call may find only one of them ready.
		if n := strings.Count(got, ": "+id+": hello"); n < 2 {
			t.Errorf("instance %s answered %d of 6 calls, want 2 or more:\n%s", id, n, got)
		}
	}

	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("server: %v", err)
		}
	}
	if ids := reg.ids(); len(ids) != 0 {
		t.Fatalf("still registered after stop: %v", ids)
	}
	if !strings.Contains(out.String(), "deregistered echo/") {
		t.Fatalf("server output:\n%s", out.String())
	}
}
