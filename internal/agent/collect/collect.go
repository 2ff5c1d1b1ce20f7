package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Source is one sensor, or one device that yields several readings.
//
// Collect takes one set of readings at time now. A point with an empty
// Sensor gets the name of the Input; a point with a zero TsUnixMs gets now.
// The Collector calls Collect from a single goroutine, never concurrently
// with itself, so implementations need no locking of their own state. It
// should return promptly when ctx is done.
type Source interface {
	Collect(ctx context.Context, now time.Time) ([]*outpostv1.Point, error)
}

// Sink takes the points of one read durably: Append returns nil only once
// the points are stored (in the agent, in the spool), which is when a point
// counts as accepted from its source. Append is called concurrently from
// every source's goroutine; an implementation coalesces concurrent calls
// (group commit) rather than serializing them.
type Sink interface {
	Append(ctx context.Context, points []*outpostv1.Point) error
}

// Input is a Source with the name and the interval it is read at.
type Input struct {
	// Name is the sensor name of the points the source leaves unnamed.
	Name string
	// Interval is the time between two reads; it must be positive.
	Interval time.Duration
	// Source is what is read.
	Source Source
}

// Options tunes a Collector. The zero value is usable.
type Options struct {
	// Logger receives the collector's logs; nil discards them.
	Logger *slog.Logger
	// PanicBackoff is the pause after a source panics, doubled for each
	// further panic in a row up to MaxPanicBackoff. Default 1s.
	PanicBackoff time.Duration
	// MaxPanicBackoff caps PanicBackoff. Default 1m.
	MaxPanicBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats are the Collector's counters since it was created.
type Stats struct {
	// Points is how many valid points were sent downstream.
	Points uint64
	// Invalid is how many points were dropped for breaking the wire limits.
	Invalid uint64
	// Errors is how many Collect calls returned an error.
	Errors uint64
	// Panics is how many Collect calls panicked.
	Panics uint64
}

// Collector runs a set of sources and sends their points to one channel.
type Collector struct {
	inputs []Input
	sink   Sink
	opts   Options
	log    *slog.Logger

	started atomic.Bool

	points, invalid, errs, panics atomic.Uint64
}

// New returns a Collector that reads inputs and appends their points to sink.
func New(inputs []Input, sink Sink, opts Options) (*Collector, error) {
	var errs []error
	for i, in := range inputs {
		if err := protocol.ValidSensorName(in.Name); err != nil {
			errs = append(errs, fmt.Errorf("input %d: %w", i, err))
		}
		if in.Interval <= 0 {
			errs = append(errs, fmt.Errorf("input %d (%s): interval must be positive", i, in.Name))
		}
		if in.Source == nil {
			errs = append(errs, fmt.Errorf("input %d (%s): no source", i, in.Name))
		}
	}
	if sink == nil {
		errs = append(errs, errors.New("no sink"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating collector: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PanicBackoff <= 0 {
		opts.PanicBackoff = time.Second
	}
	if opts.MaxPanicBackoff < opts.PanicBackoff {
		opts.MaxPanicBackoff = max(time.Minute, opts.PanicBackoff)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Collector{inputs: inputs, sink: sink, opts: opts, log: opts.Logger.With("component", "collect")}, nil
}

// Stats returns the counters. It is safe to call at any time.
func (c *Collector) Stats() Stats {
	return Stats{Points: c.points.Load(), Invalid: c.invalid.Load(), Errors: c.errs.Load(), Panics: c.panics.Load()}
}

// Run reads every input until ctx is done, then waits for the per-source
// goroutines to exit and returns nil. It may be called once.
func (c *Collector) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("collector: Run called twice")
	}
	var wg sync.WaitGroup
	for _, in := range c.inputs {
		wg.Go(func() { c.runInput(ctx, in) })
	}
	wg.Wait()
	return nil
}

func (c *Collector) runInput(ctx context.Context, in Input) {
	log := c.log.With("source", in.Name)
	ticker := time.NewTicker(in.Interval)
	defer ticker.Stop()
	// check is reused for every point so that validating costs no allocation.
	check := &outpostv1.TelemetryBatch{SeqFirst: 1, Points: make([]*outpostv1.Point, 1)}
	failing, warnedInvalid := false, false
	panicsInARow := 0
	for {
		now := c.opts.Now()
		points, err := c.collectOnce(ctx, in.Source, now)
		var pe *PanicError
		switch {
		case errors.As(err, &pe):
			c.panics.Add(1)
			panicsInARow++
			wait := c.opts.PanicBackoff << min(panicsInARow-1, 20)
			wait = min(wait, c.opts.MaxPanicBackoff)
			log.Error("source panicked; retrying after a pause", "panic", pe.Value, "pause", wait, "stack", string(pe.Stack))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			ticker.Reset(in.Interval)
			continue
		case err != nil:
			panicsInARow = 0
			c.errs.Add(1)
			if !failing && ctx.Err() == nil {
				log.Warn("reading source failed; will keep trying", "err", err)
			}
			failing = true
		default:
			panicsInARow = 0
			if failing {
				log.Info("source reads again")
				failing = false
			}
		}
		valid := points[:0]
		for _, p := range points {
			if p == nil {
				continue
			}
			if p.Sensor == "" {
				p.Sensor = in.Name
			}
			if p.TsUnixMs == 0 {
				p.TsUnixMs = now.UnixMilli()
			}
			check.Points[0] = p
			if err := protocol.ValidateTelemetry(check, now); err != nil {
				c.invalid.Add(1)
				level := slog.LevelDebug
				if !warnedInvalid {
					level, warnedInvalid = slog.LevelWarn, true
				}
				log.Log(ctx, level, "dropping a point the hub would refuse; further ones are logged at debug level", "err", err)
				continue
			}
			valid = append(valid, p)
		}
		if len(valid) > 0 {
			if err := c.sink.Append(ctx, valid); err != nil {
				if ctx.Err() != nil {
					return
				}
				c.errs.Add(1)
				log.Error("storing points failed; they are lost", "points", len(valid), "err", err)
			} else {
				c.points.Add(uint64(len(valid)))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// collectOnce calls s.Collect and turns a panic into a *PanicError.
func (c *Collector) collectOnce(ctx context.Context, s Source, now time.Time) (points []*outpostv1.Point, err error) {
	defer func() {
		if r := recover(); r != nil {
			points, err = nil, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return s.Collect(ctx, now)
}
