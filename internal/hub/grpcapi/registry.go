package grpcapi

import (
	"context"
	"time"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Registry is the service registry (registry.Service) as the API uses it.
// Errors match registry.ErrNotFound and registry.ErrInvalid.
type Registry interface {
	Register(ctx context.Context, in registry.Instance) (registry.Instance, error)
	Deregister(ctx context.Context, service, id string) error
	Renew(ctx context.Context, service, id string) (registry.Instance, error)
	Resolve(ctx context.Context, service string, opts registry.ResolveOptions) ([]registry.Instance, error)
	// Watch sends the resolved instances at once and after every change,
	// and closes the channel when ctx ends or the watch fails.
	Watch(ctx context.Context, service string, opts registry.ResolveOptions) (<-chan []registry.Instance, error)
	// List returns the instances of service ("" for every service).
	List(ctx context.Context, service string) ([]registry.Instance, error)
}

type registryServer struct {
	apiv1.UnimplementedRegistryServiceServer
	s *Server
}

func (r *registryServer) reg() Registry { return r.s.opts.Registry }

func (r *registryServer) Register(ctx context.Context, req *apiv1.RegisterRequest) (*apiv1.Instance, error) {
	if req.GetInstance() == nil {
		return nil, status.Error(codes.InvalidArgument, "instance is required")
	}
	in, err := r.reg().Register(ctx, fromInstance(req.GetInstance()))
	if err != nil {
		return nil, toStatus(r.s.logger, "Register", err)
	}
	return toInstance(in), nil
}

func (r *registryServer) Deregister(ctx context.Context, req *apiv1.DeregisterRequest) (*apiv1.DeregisterResponse, error) {
	if err := r.reg().Deregister(ctx, req.GetService(), req.GetId()); err != nil {
		return nil, toStatus(r.s.logger, "Deregister", err)
	}
	return &apiv1.DeregisterResponse{}, nil
}

func (r *registryServer) Renew(ctx context.Context, req *apiv1.RenewRequest) (*apiv1.Instance, error) {
	in, err := r.reg().Renew(ctx, req.GetService(), req.GetId())
	if err != nil {
		return nil, toStatus(r.s.logger, "Renew", err)
	}
	return toInstance(in), nil
}

func (r *registryServer) Resolve(ctx context.Context, req *apiv1.ResolveRequest) (*apiv1.ResolveResponse, error) {
	ins, err := r.reg().Resolve(ctx, req.GetService(), resolveOptions(req))
	if err != nil {
		return nil, toStatus(r.s.logger, "Resolve", err)
	}
	return toResolveResponse(ins), nil
}

func (r *registryServer) Watch(req *apiv1.ResolveRequest, stream grpc.ServerStreamingServer[apiv1.ResolveResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ch, err := r.reg().Watch(ctx, req.GetService(), resolveOptions(req))
	if err != nil {
		return toStatus(r.s.logger, "Watch", err)
	}
	// The watch's goroutine ends once ctx is cancelled and ch closed.
	defer func() {
		cancel()
		for range ch {
		}
	}()
	for {
		select {
		case <-r.s.quit:
			return errStopping
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ins, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return status.FromContextError(ctx.Err()).Err()
				}
				return status.Error(codes.Unavailable, "the registry ended the watch; watch again")
			}
			if err := stream.Send(toResolveResponse(ins)); err != nil {
				return err
			}
		}
	}
}

func (r *registryServer) List(ctx context.Context, _ *apiv1.ListRequest) (*apiv1.ResolveResponse, error) {
	ins, err := r.reg().List(ctx, "")
	if err != nil {
		return nil, toStatus(r.s.logger, "List", err)
	}
	return toResolveResponse(ins), nil
}

func resolveOptions(req *apiv1.ResolveRequest) registry.ResolveOptions {
	return registry.ResolveOptions{Tags: req.GetTags(), IncludeWarning: req.GetIncludeWarning()}
}

func toResolveResponse(ins []registry.Instance) *apiv1.ResolveResponse {
	out := &apiv1.ResolveResponse{Instances: make([]*apiv1.Instance, len(ins))}
	for i, in := range ins {
		out.Instances[i] = toInstance(in)
	}
	return out
}

var healthToProto = map[registry.Health]apiv1.Health{
	registry.Passing:  apiv1.Health_HEALTH_PASSING,
	registry.Warning:  apiv1.Health_HEALTH_WARNING,
	registry.Critical: apiv1.Health_HEALTH_CRITICAL,
}

func toInstance(in registry.Instance) *apiv1.Instance {
	out := &apiv1.Instance{
		Service: in.Service, Id: in.ID, Address: in.Address, Port: uint32(max(in.Port, 0)), Tags: in.Tags, Meta: in.Meta,
		Health: healthToProto[in.Health], Output: in.Output, Source: in.Source, Device: in.Device,
		UpdatedUnixMs: unixMs(in.UpdatedAt),
	}
	if in.TTL > 0 {
		out.Ttl = durationpb.New(in.TTL)
	}
	if c := in.Check; c != nil {
		out.Check = &apiv1.Check{Type: c.Type, Path: c.Path, Interval: durationpb.New(c.Interval), Timeout: durationpb.New(c.Timeout)}
	}
	return out
}

// fromInstance is a registration as the registry takes it; the registry
// validates it (a port over 65535 included) and sets health and times.
func fromInstance(in *apiv1.Instance) registry.Instance {
	out := registry.Instance{
		Service: in.GetService(), ID: in.GetId(), Address: in.GetAddress(), Port: int(in.GetPort()), Tags: in.GetTags(),
		Meta: in.GetMeta(), Output: in.GetOutput(), Source: in.GetSource(), Device: in.GetDevice(),
	}
	for h, p := range healthToProto {
		if in.GetHealth() == p {
			out.Health = h
		}
	}
	if in.GetTtl() != nil {
		out.TTL = in.GetTtl().AsDuration()
	}
	if c := in.GetCheck(); c != nil {
		out.Check = &registry.Check{Type: c.GetType(), Path: c.GetPath(), Interval: duration(c.GetInterval()), Timeout: duration(c.GetTimeout())}
	}
	return out
}

func duration(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}
