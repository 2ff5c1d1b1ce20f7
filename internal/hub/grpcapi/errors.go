package grpcapi

import (
	"context"
	"errors"
	"log/slog"

	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorCodes maps the services' sentinel errors to gRPC codes; the first
// match wins.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{store.ErrNotFound, codes.NotFound},
	{shadow.ErrNotFound, codes.NotFound},
	{registry.ErrNotFound, codes.NotFound},
	{device.ErrInvalid, codes.InvalidArgument},
	{shadow.ErrInvalid, codes.InvalidArgument},
	{shadow.ErrTooLarge, codes.InvalidArgument},
	{shadow.ErrUnsupportedCoding, codes.InvalidArgument},
	{registry.ErrInvalid, codes.InvalidArgument},
	{shadow.ErrVersionConflict, codes.Aborted},
	{store.ErrVersionConflict, codes.Aborted},
	{store.ErrExists, codes.AlreadyExists},
}

// toStatus turns a service error into a gRPC status error. Errors the
// client caused keep their message; anything else is logged and answered
// with Internal and a message without the cause.
func toStatus(logger *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			msg := err.Error()
			// A shadow rejection's message is the AWS-compatible text.
			var r *shadow.Rejection
			if errors.As(err, &r) {
				msg = r.Message
			}
			return status.Error(ec.code, msg)
		}
	}
	logger.Error("request failed", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error; the hub's log has the cause")
}
