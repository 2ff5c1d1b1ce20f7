package main

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The echo service is registered by hand with a grpc.ServiceDesc and the
// well-known StringValue message, so the example needs no .proto file:
// method /outpost.examples.Echo/Echo takes a StringValue and answers one.
const (
	echoService = "outpost.examples.Echo"
	echoMethod  = "/" + echoService + "/Echo"
)

// echoServer answers every call with "ID: MESSAGE", so the client can tell
// which instance answered.
type echoServer struct {
	id string
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.StringValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			s := srv.(*echoServer)
			handle := func(context.Context, any) (any, error) {
				return wrapperspb.String(s.id + ": " + in.GetValue()), nil
			}
			if icpt == nil {
				return handle(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, handle)
		},
	}},
	Metadata: "examples/echo",
}

// echo calls the echo service through conn.
func echo(ctx context.Context, conn grpc.ClientConnInterface, msg string) (string, error) {
	out := &wrapperspb.StringValue{}
	if err := conn.Invoke(ctx, echoMethod, wrapperspb.String(msg), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}
