package grpcapi

import (
	"context"
	"time"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
	"github.com/outpost-edge/outpost/internal/hub/livefeed"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Telemetry reads stored points.
type Telemetry interface {
	Points(ctx context.Context, q store.PointQuery) ([]store.Point, error)
}

// Feed hands out live subscriptions to stored points (livefeed.Feed).
type Feed interface {
	Subscribe(f livefeed.Filter) *livefeed.Subscription
}

// Query limits, as in the REST API.
const (
	defaultLimit = 1000
	maxLimit     = 10000
)

// maxPointsPerMessage splits a large stored group into several Subscribe
// messages, to stay well under gRPC's default 4 MiB message limit.
const maxPointsPerMessage = 1000

type telemetryServer struct {
	apiv1.UnimplementedTelemetryServiceServer
	s *Server
}

func (t *telemetryServer) Query(ctx context.Context, req *apiv1.QueryRequest) (*apiv1.QueryResponse, error) {
	if req.GetDevice() == "" {
		return nil, status.Error(codes.InvalidArgument, "device is required")
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = defaultLimit
	}
	if limit > maxLimit {
		return nil, status.Errorf(codes.InvalidArgument, "limit must be from 1 to %d", maxLimit)
	}
	now := time.Now()
	since, until := now.Add(-time.Hour), now.Add(protocol.MaxClockSkew+time.Minute)
	if ms := req.GetSinceUnixMs(); ms != 0 {
		since = time.UnixMilli(ms)
	}
	if ms := req.GetUntilUnixMs(); ms != 0 {
		until = time.UnixMilli(ms)
	}
	// As REST does: an unknown device is NOT_FOUND, not an empty answer.
	if _, err := t.s.opts.Devices.Get(ctx, req.GetDevice()); err != nil {
		return nil, toStatus(t.s.logger, "Query", err)
	}
	pts, err := t.s.opts.Telemetry.Points(ctx, store.PointQuery{
		DeviceID: req.GetDevice(), Sensor: req.GetSensor(), Since: since, Until: until, Limit: limit,
	})
	if err != nil {
		return nil, toStatus(t.s.logger, "Query", err)
	}
	out := &apiv1.QueryResponse{Device: req.GetDevice(), Points: make([]*apiv1.StoredPoint, len(pts))}
	for i, p := range pts {
		if p.DeviceID == "" {
			p.DeviceID = req.GetDevice()
		}
		out.Points[i] = toStoredPoint(p)
	}
	return out, nil
}

func (t *telemetryServer) Subscribe(req *apiv1.SubscribeRequest, stream grpc.ServerStreamingServer[apiv1.SubscribeResponse]) error {
	if t.s.opts.Feed == nil {
		return status.Error(codes.Unavailable, "live telemetry is not available on this hub")
	}
	ctx := stream.Context()
	sub := t.s.opts.Feed.Subscribe(livefeed.Filter{Devices: req.GetDevices(), Sensors: req.GetSensors()})
	defer sub.Close()
	// The headers tell the client that the subscription is in place.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case <-t.s.quit:
			return errStopping
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case batch := <-sub.C():
			dropped := sub.TakeDropped()
			for len(batch) > 0 {
				n := min(len(batch), maxPointsPerMessage)
				msg := &apiv1.SubscribeResponse{Points: make([]*apiv1.StoredPoint, n), Dropped: dropped}
				for i, p := range batch[:n] {
					msg.Points[i] = toStoredPoint(p)
				}
				if err := stream.Send(msg); err != nil {
					return err
				}
				batch, dropped = batch[n:], 0
			}
		case <-sub.Notify():
			if n := sub.TakeDropped(); n > 0 {
				if err := stream.Send(&apiv1.SubscribeResponse{Dropped: n}); err != nil {
					return err
				}
			}
		}
	}
}

func toStoredPoint(p store.Point) *apiv1.StoredPoint {
	out := &apiv1.StoredPoint{Device: p.DeviceID, Seq: p.Seq, Sensor: p.Sensor, TsUnixMs: p.TS.UnixMilli()}
	switch p.Kind {
	case store.KindNum:
		out.Value = &apiv1.StoredPoint_Num{Num: p.Num}
	case store.KindStr:
		out.Value = &apiv1.StoredPoint_Str{Str: p.Str}
	case store.KindFlag:
		out.Value = &apiv1.StoredPoint_Flag{Flag: p.Flag}
	}
	return out
}

// unixMs is t in milliseconds since the epoch, or 0 for the zero time.
func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
