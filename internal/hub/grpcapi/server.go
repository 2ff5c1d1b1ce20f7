package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Verifier checks an API token (the auth service's Verify, as REST uses
// it) and returns the user it was issued to. It must be safe for
// concurrent use.
type Verifier interface {
	Verify(token string) (string, error)
}

// Options configure the server. Every service interface must be safe for
// concurrent use.
type Options struct {
	// Auth verifies the bearer token of every call (required).
	Auth    Verifier
	Devices Devices
	// Telemetry serves TelemetryService.Query; Feed serves Subscribe.
	Telemetry Telemetry
	Feed      Feed
	Shadows   Shadows
	// Registry serves RegistryService; nil: the service is not registered.
	// (Mind that a nil pointer in a non-nil interface is not nil.)
	Registry Registry
	Logger   *slog.Logger
	// StopTimeout bounds the graceful stop; calls still running then are
	// cut off. 0: 5s.
	StopTimeout time.Duration
}

// Server is the hub's gRPC server. Create it with New, serve with Run.
type Server struct {
	opts   Options
	logger *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	// quit is closed when the server stops, which ends the streams.
	quit     chan struct{}
	stopOnce sync.Once
}

// unauthenticated lists the method prefixes open without a token: health
// checks and reflection (so that `grpcurl -plaintext HOST:PORT list`
// works).
var unauthenticated = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// New returns a server with every service of opts registered.
func New(opts Options) *Server {
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 5 * time.Second
	}
	s := &Server{opts: opts, logger: opts.Logger.With("component", "grpcapi"), quit: make(chan struct{})}
	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.authUnary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.authStream),
	)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	apiv1.RegisterDeviceServiceServer(s.grpc, &deviceServer{s: s})
	apiv1.RegisterTelemetryServiceServer(s.grpc, &telemetryServer{s: s})
	apiv1.RegisterShadowServiceServer(s.grpc, &shadowServer{s: s})
	if opts.Registry != nil {
		apiv1.RegisterRegistryServiceServer(s.grpc, &registryServer{s: s})
	}
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return s
}

// Run serves on ln until ctx ends, then stops the server (Stop) and
// returns nil; it returns an error if serving fails.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(ln) }()
	select {
	case err := <-errc:
		s.Stop()
		if err != nil {
			return fmt.Errorf("serving gRPC: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	s.Stop()
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving gRPC: %w", err)
	}
	return nil
}

// Stop reports NOT_SERVING, ends the open streams, and stops the server
// gracefully, cutting off calls still running after StopTimeout. It is
// safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.health.Shutdown()
		close(s.quit)
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(s.opts.StopTimeout):
			s.grpc.Stop()
			<-done
		}
	})
}

// errStopping ends streams when the server stops.
var errStopping = status.Error(codes.Unavailable, "the hub is shutting down")

type userKey struct{}

// User returns the user whose token authenticated the call in ctx.
func User(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok
}

// authenticate checks the call's "authorization: Bearer TOKEN" metadata.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	for _, p := range unauthenticated {
		if strings.HasPrefix(method, p) {
			return ctx, nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return nil, status.Error(codes.Unauthenticated, "missing token: send metadata \"authorization: Bearer TOKEN\" (outpost login, or POST /api/v1/auth/login, issues one)")
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer TOKEN\"")
	}
	user, err := s.opts.Auth.Verify(strings.TrimSpace(tok))
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "invalid or expired token; log in again")
	}
	return context.WithValue(ctx, userKey{}, user), nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

// authedStream carries the authenticated context into a stream handler.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// recoverUnary and recoverStream turn a handler's panic into Internal
// instead of crashing the hub.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
	defer s.recover(info.FullMethod, &err)
	return handler(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer s.recover(info.FullMethod, &err)
	return handler(srv, ss)
}

func (s *Server) recover(method string, err *error) {
	if v := recover(); v != nil {
		s.logger.Error("panic in gRPC handler", "method", method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "internal error; the hub's log has the cause")
	}
}
