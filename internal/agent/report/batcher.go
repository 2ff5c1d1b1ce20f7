package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Sink receives finished batches, oldest first, from a single goroutine.
// Put takes ownership of b. It should not block for long: the batcher stops
// reading points while it waits. An error from Put stops the batcher.
type Sink interface {
	Put(ctx context.Context, b *outpostv1.TelemetryBatch) error
}

// Options configures a Batcher.
type Options struct {
	// MaxPoints is the most points per batch, 1 to protocol.MaxPointsPerBatch.
	MaxPoints int
	// MaxDelay is how long a batch's first point waits for more; positive.
	MaxDelay time.Duration
	// Seq numbers the points.
	Seq *Seq
	// Sink receives the batches.
	Sink Sink
	// Logger receives the batcher's logs; nil discards them.
	Logger *slog.Logger
}

// Stats are the Batcher's counters.
type Stats struct {
	// Batches is how many batches were handed to the sink.
	Batches uint64
	// Points is how many points those batches held.
	Points uint64
}

// maxBatchBytes leaves room under protocol.MaxPayloadBytes for the batch's
// own fields (device and seq_first).
const maxBatchBytes = protocol.MaxPayloadBytes - 128

// Batcher groups points into numbered batches.
type Batcher struct {
	opts Options
	log  *slog.Logger

	started          atomic.Bool
	batches, npoints atomic.Uint64
}

// New returns a Batcher.
func New(opts Options) (*Batcher, error) {
	var errs []error
	if opts.MaxPoints < 1 || opts.MaxPoints > protocol.MaxPointsPerBatch {
		errs = append(errs, fmt.Errorf("max points must be 1 to %d, got %d", protocol.MaxPointsPerBatch, opts.MaxPoints))
	}
	if opts.MaxDelay <= 0 {
		errs = append(errs, fmt.Errorf("max delay must be positive, got %s", opts.MaxDelay))
	}
	if opts.Seq == nil {
		errs = append(errs, errors.New("no sequence"))
	}
	if opts.Sink == nil {
		errs = append(errs, errors.New("no sink"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating batcher: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Batcher{opts: opts, log: opts.Logger.With("component", "report")}, nil
}

// Stats returns the counters. It is safe to call at any time.
func (b *Batcher) Stats() Stats {
	return Stats{Batches: b.batches.Load(), Points: b.npoints.Load()}
}

// Run batches the points read from in until in is closed, which is the
// graceful stop: the last, partial batch is flushed and Run returns nil.
// When ctx is done Run flushes what it holds and returns nil too, without
// draining in. It returns an error when numbering or the sink fails. It may
// be called once.
func (b *Batcher) Run(ctx context.Context, in <-chan *outpostv1.Point) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("batcher: Run called twice")
	}
	var (
		cur    = make([]*outpostv1.Point, 0, b.opts.MaxPoints)
		size   int // encoded size of cur's points inside a batch
		timer  = time.NewTimer(time.Hour)
		timerC <-chan time.Time // nil while cur is empty
	)
	timer.Stop()
	defer timer.Stop()

	flush := func() error {
		timer.Stop()
		timerC = nil
		if len(cur) == 0 {
			return nil
		}
		first, err := b.opts.Seq.Reserve(len(cur))
		if err != nil {
			return fmt.Errorf("numbering a batch of %d points: %w", len(cur), err)
		}
		batch := &outpostv1.TelemetryBatch{SeqFirst: first, Points: cur}
		if err := b.opts.Sink.Put(ctx, batch); err != nil {
			return fmt.Errorf("queueing batch %d: %w", first, err)
		}
		b.batches.Add(1)
		b.npoints.Add(uint64(len(cur)))
		cur, size = make([]*outpostv1.Point, 0, b.opts.MaxPoints), 0
		return nil
	}

	for {
		select {
		case p, ok := <-in:
			if !ok {
				return flush()
			}
			ps := pointSize(p)
			if size+ps > maxBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			cur = append(cur, p)
			size += ps
			if len(cur) == 1 {
				timer.Reset(b.opts.MaxDelay)
				timerC = timer.C
			}
			if len(cur) >= b.opts.MaxPoints {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-timerC:
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return flush()
		}
	}
}

// pointSize is the encoded size of p as an element of TelemetryBatch.points.
func pointSize(p *outpostv1.Point) int {
	n := proto.Size(p)
	return protowire.SizeTag(3) + protowire.SizeBytes(n)
}
