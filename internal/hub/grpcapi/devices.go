package grpcapi

import (
	"context"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Devices is the device service as the API uses it.
type Devices interface {
	// Get returns a device or an error matching store.ErrNotFound.
	Get(ctx context.Context, id string) (store.Device, error)
	// List returns the devices whose labels match every pair of selector.
	List(ctx context.Context, selector map[string]string) ([]store.Device, error)
}

type deviceServer struct {
	apiv1.UnimplementedDeviceServiceServer
	s *Server
}

func (d *deviceServer) ListDevices(ctx context.Context, req *apiv1.ListDevicesRequest) (*apiv1.ListDevicesResponse, error) {
	ds, err := d.s.opts.Devices.List(ctx, req.GetLabelSelector())
	if err != nil {
		return nil, toStatus(d.s.logger, "ListDevices", err)
	}
	out := &apiv1.ListDevicesResponse{Devices: make([]*apiv1.Device, len(ds))}
	for i, dev := range ds {
		out.Devices[i] = toDevice(dev)
	}
	return out, nil
}

func (d *deviceServer) GetDevice(ctx context.Context, req *apiv1.GetDeviceRequest) (*apiv1.Device, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	dev, err := d.s.opts.Devices.Get(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(d.s.logger, "GetDevice", err)
	}
	return toDevice(dev), nil
}

func toDevice(d store.Device) *apiv1.Device {
	out := &apiv1.Device{
		Id: d.ID, Labels: d.Labels, CreatedUnixMs: unixMs(d.CreatedAt), Joined: !d.JoinedAt.IsZero(),
		Online: d.Online, LastSeenUnixMs: unixMs(d.LastSeen), AgentVersion: d.AgentVersion,
	}
	if sp := d.Spool; sp != nil {
		out.Spool = &outpostv1.SpoolStats{Points: sp.Points, Bytes: sp.Bytes, Dropped: sp.Dropped, OldestUnixMs: unixMs(sp.Oldest)}
		out.SpoolReportedUnixMs = unixMs(sp.ReportedAt)
	}
	return out
}
