package grpcapi

import (
	"context"
	"encoding/json"
	"strings"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Shadows is the shadow service as the API uses it. Its errors are
// *shadow.Rejection values matching the shadow package's sentinels.
type Shadows interface {
	Get(ctx context.Context, deviceID, name string) (protocol.ShadowDocument, error)
	PatchDesired(ctx context.Context, deviceID, name string, patch []byte, version *int64) (protocol.ShadowDocument, error)
}

type shadowServer struct {
	apiv1.UnimplementedShadowServiceServer
	s *Server
}

func (sh *shadowServer) GetShadow(ctx context.Context, req *apiv1.GetShadowRequest) (*apiv1.ShadowResponse, error) {
	if req.GetDevice() == "" {
		return nil, status.Error(codes.InvalidArgument, "device is required")
	}
	doc, err := sh.s.opts.Shadows.Get(ctx, req.GetDevice(), req.GetName())
	if err != nil {
		return nil, toStatus(sh.s.logger, "GetShadow", err)
	}
	return sh.response(req.GetDevice(), req.GetName(), doc)
}

func (sh *shadowServer) UpdateDesired(ctx context.Context, req *apiv1.UpdateDesiredRequest) (*apiv1.ShadowResponse, error) {
	switch {
	case req.GetDevice() == "":
		return nil, status.Error(codes.InvalidArgument, "device is required")
	case strings.TrimSpace(req.GetPatchJson()) == "":
		return nil, status.Error(codes.InvalidArgument, `patch_json is empty; expected a JSON object such as {"key": "value"}`)
	case len(req.GetPatchJson()) > protocol.MaxShadowRequestBytes:
		return nil, status.Errorf(codes.InvalidArgument, "patch_json is over %d bytes", protocol.MaxShadowRequestBytes)
	}
	doc, err := sh.s.opts.Shadows.PatchDesired(ctx, req.GetDevice(), req.GetName(), []byte(req.GetPatchJson()), req.Version)
	if err != nil {
		return nil, toStatus(sh.s.logger, "UpdateDesired", err)
	}
	return sh.response(req.GetDevice(), req.GetName(), doc)
}

func (sh *shadowServer) response(device, name string, doc protocol.ShadowDocument) (*apiv1.ShadowResponse, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, toStatus(sh.s.logger, "encoding shadow", err)
	}
	return &apiv1.ShadowResponse{Device: device, Name: name, Version: doc.Version, DocumentJson: string(b)}, nil
}
