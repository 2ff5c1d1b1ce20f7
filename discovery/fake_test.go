package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

// testToken is the bearer token the fake registry accepts.
const testToken = "test-token"

// fakeRegistry is an in-memory RegistryService. Unlike the hub it returns
// instances whatever their health, so that the client's own health filter
// is exercised. Tests change it with put, remove and breakWatches.
type fakeRegistry struct {
	apiv1.UnimplementedRegistryServiceServer

	// mu guards every field below.
	mu        sync.Mutex
	instances map[string]*apiv1.Instance // by SERVICE/ID
	// changed is closed and replaced on every change.
	changed chan struct{}
	// broken is closed and replaced by breakWatches.
	broken      chan struct{}
	watchOpens  int
	renews      int
	authHeaders []string
}

// startFakeRegistry serves a fakeRegistry on 127.0.0.1:0 until the test ends.
func startFakeRegistry(t *testing.T) (*fakeRegistry, string) {
	t.Helper()
	f := &fakeRegistry{
		instances: map[string]*apiv1.Instance{},
		changed:   make(chan struct{}),
		broken:    make(chan struct{}),
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := f.authorize(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := f.authorize(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	apiv1.RegisterRegistryServiceServer(srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return f, lis.Addr().String()
}

// authorize checks the bearer token like the hub does and records it.
func (f *fakeRegistry) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get("authorization")
	f.mu.Lock()
	f.authHeaders = append(f.authHeaders, got...)
	f.mu.Unlock()
	if len(got) != 1 || got[0] != "Bearer "+testToken {
		return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
	}
	return nil
}

// notifyLocked wakes every Watch. f.mu must be held.
func (f *fakeRegistry) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// put adds or replaces instances.
func (f *fakeRegistry) put(ins ...*apiv1.Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range ins {
		f.instances[in.GetService()+"/"+in.GetId()] = proto.Clone(in).(*apiv1.Instance)
	}
	f.notifyLocked()
}

// remove deletes an instance.
func (f *fakeRegistry) remove(service, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.instances, service+"/"+id)
	f.notifyLocked()
}

// breakWatches ends every open Watch stream with Unavailable.
func (f *fakeRegistry) breakWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.broken)
	f.broken = make(chan struct{})
}

func (f *fakeRegistry) stats() (watchOpens, renews int, auth []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watchOpens, f.renews, slices.Clone(f.authHeaders)
}

// snapshotLocked returns service's instances carrying every tag, sorted by
// id. f.mu must be held.
func (f *fakeRegistry) snapshotLocked(req *apiv1.ResolveRequest) *apiv1.ResolveResponse {
	resp := &apiv1.ResolveResponse{}
	for _, in := range f.instances {
		if in.GetService() != req.GetService() {
			continue
		}
		ok := true
		for _, tag := range req.GetTags() {
			ok = ok && slices.Contains(in.GetTags(), tag)
		}
		if ok {
			resp.Instances = append(resp.Instances, proto.Clone(in).(*apiv1.Instance))
		}
	}
	sort.Slice(resp.Instances, func(i, j int) bool { return resp.Instances[i].GetId() < resp.Instances[j].GetId() })
	return resp
}

func (f *fakeRegistry) Register(_ context.Context, req *apiv1.RegisterRequest) (*apiv1.Instance, error) {
	in := proto.Clone(req.GetInstance()).(*apiv1.Instance)
	if in.GetService() == "" {
		return nil, status.Error(codes.InvalidArgument, "empty service")
	}
	if in.GetId() == "" {
		in.Id = fmt.Sprintf("%s:%d", in.GetAddress(), in.GetPort())
	}
	in.Health = apiv1.Health_HEALTH_PASSING
	in.Source = "ttl"
	f.put(in)
	return in, nil
}

func (f *fakeRegistry) Deregister(_ context.Context, req *apiv1.DeregisterRequest) (*apiv1.DeregisterResponse, error) {
	f.remove(req.GetService(), req.GetId())
	return &apiv1.DeregisterResponse{}, nil
}

func (f *fakeRegistry) Renew(_ context.Context, req *apiv1.RenewRequest) (*apiv1.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.instances[req.GetService()+"/"+req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such instance")
	}
	f.renews++
	return proto.Clone(in).(*apiv1.Instance), nil
}

func (f *fakeRegistry) Resolve(_ context.Context, req *apiv1.ResolveRequest) (*apiv1.ResolveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshotLocked(req), nil
}

func (f *fakeRegistry) Watch(req *apiv1.ResolveRequest, stream apiv1.RegistryService_WatchServer) error {
	f.mu.Lock()
	f.watchOpens++
	f.mu.Unlock()
	for {
		f.mu.Lock()
		snap := f.snapshotLocked(req)
		changed, broken := f.changed, f.broken
		f.mu.Unlock()
		if err := stream.Send(snap); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-broken:
			return status.Error(codes.Unavailable, "watch broken by test")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// instance returns a registry instance of service at addr ("host:port").
func instance(t *testing.T, service, id, addr string, health apiv1.Health, tags ...string) *apiv1.Instance {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("splitting %q: %v", addr, err)
	}
	var p uint32
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatalf("parsing port %q: %v", port, err)
	}
	return &apiv1.Instance{Service: service, Id: id, Address: host, Port: p, Health: health, Tags: tags}
}

// echoMethod is the full method name of the test echo service.
const echoMethod = "/outpost.test.Echo/Echo"

// echoServer is a real gRPC server whose one method answers its name.
type echoServer struct {
	name string
	addr string
	srv  *grpc.Server
	done chan struct{}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "outpost.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.StringValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			return wrapperspb.String(srv.(*echoServer).name), nil
		},
	}},
}

// startEcho serves an echoServer on 127.0.0.1:0; it stops when the test
// ends unless stop was called before.
func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	e := &echoServer{name: name, addr: lis.Addr().String(), srv: grpc.NewServer(), done: make(chan struct{})}
	e.srv.RegisterService(&echoDesc, e)
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(lis)
	}()
	t.Cleanup(e.stop)
	return e
}

// stop stops the server at once, breaking its connections.
func (e *echoServer) stop() {
	e.srv.Stop()
	<-e.done
}
