package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrStopped is returned by Handle once the service has stopped.
var ErrStopped = errors.New("ingest stopped")

// Store is what ingest needs from storage.
type Store interface {
	// InsertPoints stores points atomically, ignoring (device, seq) pairs
	// stored already, and returns how many were new.
	InsertPoints(ctx context.Context, points []store.Point, seen time.Time) (int, error)
}

// Publisher receives the points of every committed group of batches
// (package livefeed's Feed). Publish is called from the writer goroutine:
// it must not block, and must not keep points after it returns (the
// writer reuses the slice).
type Publisher interface {
	Publish(points []store.Point)
}

// maxPointsPerCommit caps one transaction so that a burst cannot hold the
// writer (and every waiting device) for long.
const maxPointsPerCommit = 50_000

// Service ingests telemetry. Handle is safe for concurrent use; Run must be
// running for Handle to make progress.
type Service struct {
	store   Store
	logger  *slog.Logger
	reqs    chan *request
	stopped chan struct{}
	now     func() time.Time
	// pub, if not nil, gets every committed group; set before Run.
	pub Publisher

	batches  *prometheus.CounterVec
	points   *prometheus.CounterVec
	rejected *prometheus.CounterVec
	commit   prometheus.Histogram
}

type request struct {
	points []store.Point
	done   chan error
}

// NewService returns an ingest service writing to st and registering its
// metrics with reg.
func NewService(st Store, logger *slog.Logger, reg prometheus.Registerer) *Service {
	s := &Service{
		store:   st,
		logger:  logger.With("component", "ingest"),
		reqs:    make(chan *request, 1024),
		stopped: make(chan struct{}),
		now:     time.Now,
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_ingest_batches_total", Help: "Telemetry batches received, by result (stored, rejected, failed).",
		}, []string{"result"}),
		points: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_ingest_points_total", Help: "Telemetry points in accepted batches, by result (stored, duplicate).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_ingest_rejected_total", Help: "Telemetry payloads rejected, by protocol error code.",
		}, []string{"code"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "outpost_ingest_commit_seconds", Help: "Time to commit one group of batches.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	reg.MustRegister(s.batches, s.points, s.rejected, s.commit)
	return s
}

// SetPublisher makes the writer hand the points of every committed group
// to p. Call it before Run. A group whose points were all stored before
// (a redelivery) is not published; a group with some new points is
// published whole, so subscribers see points at least once.
func (s *Service) SetPublisher(p Publisher) { s.pub = p }

// Result says what happened to an accepted batch.
type Result struct {
	Points int // points in the batch, new or redelivered
}

// Handle decodes, validates and durably stores one telemetry payload that
// device deviceID published. A payload that breaks the protocol returns an
// error carrying a protocol.Code; a storage failure returns any other error
// (the sender should retry later).
func (s *Service) Handle(ctx context.Context, deviceID string, payload []byte, contentType string) (Result, error) {
	b, err := protocol.DecodeTelemetry(payload, contentType, deviceID, s.now())
	if err != nil {
		code := protocol.CodeOf(err)
		if code == "" {
			code = protocol.CodeMalformed
		}
		s.rejected.WithLabelValues(string(code)).Inc()
		s.batches.WithLabelValues("rejected").Inc()
		return Result{}, err
	}
	req := &request{points: toPoints(b), done: make(chan error, 1)}
	select {
	case s.reqs <- req:
	case <-s.stopped:
		return Result{}, ErrStopped
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	select {
	case err = <-req.done:
	case <-s.stopped:
		// Run answers every request it took before it stopped; one queued
		// after its last look is answered here.
		select {
		case err = <-req.done:
		default:
			return Result{}, ErrStopped
		}
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	if err != nil {
		s.batches.WithLabelValues("failed").Inc()
		return Result{}, err
	}
	s.batches.WithLabelValues("stored").Inc()
	return Result{Points: len(req.points)}, nil
}

func toPoints(b *outpostv1.TelemetryBatch) []store.Point {
	out := make([]store.Point, len(b.GetPoints()))
	for i, p := range b.GetPoints() {
		sp := store.Point{DeviceID: b.GetDevice(), Seq: b.GetSeqFirst() + uint64(i), Sensor: p.GetSensor(), TS: time.UnixMilli(p.GetTsUnixMs())}
		switch v := p.GetValue().(type) {
		case *outpostv1.Point_Num:
			sp.Kind, sp.Num = store.KindNum, v.Num
		case *outpostv1.Point_Str:
			sp.Kind, sp.Str = store.KindStr, v.Str
		case *outpostv1.Point_Flag:
			sp.Kind, sp.Flag = store.KindFlag, v.Flag
		}
		out[i] = sp
	}
	return out
}

// Run writes queued batches until ctx ends, then fails whatever is still
// queued with ErrStopped. It returns nil on a clean stop.
func (s *Service) Run(ctx context.Context) error {
	defer func() {
		close(s.stopped)
		for {
			select {
			case r := <-s.reqs:
				r.done <- ErrStopped
			default:
				return
			}
		}
	}()
	var group []*request
	var points []store.Point
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.reqs:
			group, points = append(group[:0], r), append(points[:0], r.points...)
		}
	gather:
		for len(points) < maxPointsPerCommit {
			select {
			case r := <-s.reqs:
				group, points = append(group, r), append(points, r.points...)
			default:
				break gather
			}
		}
		s.write(ctx, group, points)
	}
}

func (s *Service) write(ctx context.Context, group []*request, points []store.Point) {
	start := time.Now()
	// The commit is not cancelled by ctx: a batch that reached the writer is
	// either committed or reported failed, never left half-done.
	stored, err := s.store.InsertPoints(context.WithoutCancel(ctx), points, s.now())
	s.commit.Observe(time.Since(start).Seconds())
	if err != nil {
		s.logger.Error("storing telemetry", "batches", len(group), "points", len(points), "err", err)
		err = fmt.Errorf("storing telemetry: %w", err)
	} else {
		s.points.WithLabelValues("stored").Add(float64(stored))
		s.points.WithLabelValues("duplicate").Add(float64(len(points) - stored))
		if s.pub != nil && stored > 0 {
			s.pub.Publish(points)
		}
	}
	for _, r := range group {
		r.done <- err
	}
}
