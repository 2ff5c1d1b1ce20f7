package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/report"
	"github.com/outpost-edge/outpost/protocol"
)

// Source is one sensor, or one device that yields several readings.
//
// Collect takes one set of readings at time now. A point with an empty
// Sensor gets the name of the Input; a point with a zero TsUnixMs gets now.
// A Collect that fails may still return the points it did read along with
// its error. The Collector calls Collect from a single goroutine, never
// concurrently with itself, so implementations need no locking of their
// own state. Collect must return promptly once ctx is done: ctx carries the
// read's deadline, and a read that ignores it holds a slot of the poll pool.
//
// A Source that holds resources (a connection, idle HTTP connections)
// acquires them in Collect and also implements io.Closer; the Collector
// calls Close once, after the last Collect, when the source's goroutine
// stops.
type Source interface {
	Collect(ctx context.Context, now time.Time) ([]*outpostv1.Point, error)
}

// Sink takes the points of one read durably: Append returns nil only once
// the points are stored (in the agent, in the spool), which is when a point
// counts as accepted from its source. Append is called concurrently from
// every source's goroutine; an implementation coalesces concurrent calls
// (group commit) rather than serializing them. Append takes ownership of
// the slice and the points.
type Sink interface {
	Append(ctx context.Context, points []*outpostv1.Point) error
}

// Input is a Source with the name and the interval it is read at.
type Input struct {
	// Name is the sensor name of the points the source leaves unnamed.
	Name string
	// Interval is the time between two reads; it must be positive.
	Interval time.Duration
	// Timeout bounds one read: the ctx passed to Collect expires after
	// it. 0, or more than Interval, means Interval.
	Timeout time.Duration
	// Source is what is read.
	Source Source
	// Strategy decides which readings are appended and when; nil means
	// report.Realtime, every reading as soon as it is read. Each Input
	// needs its own: a Strategy keeps per-source state.
	Strategy report.Strategy
	// Disabled inputs are not read until Configure enables them.
	Disabled bool
}

// Settings are the settings of one input that Configure changes while the
// collector runs.
type Settings struct {
	// Interval is the time between two reads; it must be positive.
	Interval time.Duration
	// Enabled inputs are read; a disabled one waits, holding nothing.
	Enabled bool
	// Strategy replaces the input's strategy when not nil; the points the
	// old one holds are appended first. A Strategy must not be shared.
	Strategy report.Strategy
}

// inputCtl carries Configure's changes to the goroutine of one input.
type inputCtl struct {
	mu sync.Mutex // guards the fields below
	// interval and enabled are the settings in force or about to be.
	interval time.Duration
	enabled  bool
	// strategy is a replacement the goroutine has not taken yet.
	strategy report.Strategy
	// changed gets a token after every change.
	changed chan struct{}
}

// take returns the settings and the pending strategy, which it forgets.
func (ic *inputCtl) take() (time.Duration, bool, report.Strategy) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	st := ic.strategy
	ic.strategy = nil
	return ic.interval, ic.enabled, st
}

// Default values of Options.
const (
	DefaultMaxConcurrentPolls = 8
	DefaultFlushTimeout       = 5 * time.Second
)

// Options tunes a Collector. The zero value is usable.
type Options struct {
	// Logger receives the collector's logs; nil discards them.
	Logger *slog.Logger
	// MaxConcurrentPolls caps how many sources are read at the same
	// moment, across all inputs; a read waits for a free slot before it
	// starts. Default DefaultMaxConcurrentPolls.
	MaxConcurrentPolls int
	// FlushTimeout bounds appending the points a strategy still holds
	// when the collector stops. Default DefaultFlushTimeout.
	FlushTimeout time.Duration
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
	// Points is how many valid points were appended to the sink.
	Points uint64
	// Invalid is how many points were dropped for breaking the wire limits.
	Invalid uint64
	// Errors is how many Collect calls returned an error, plus how many
	// Append calls failed.
	Errors uint64
	// Panics is how many Collect calls panicked.
	Panics uint64
	// PollWaits is how many reads waited for a free slot of the poll pool.
	PollWaits uint64
}

// Collector runs a set of sources, each in its own goroutine, and appends
// their points to a Sink through each source's report strategy.
type Collector struct {
	inputs []Input
	sink   Sink
	opts   Options
	log    *slog.Logger
	// slots is the poll pool: a read holds one element while it runs.
	slots chan struct{}
	// ctl holds each input's changeable settings by name; the map itself
	// does not change after New.
	ctl map[string]*inputCtl

	started atomic.Bool

	points, invalid, errs, panics, pollWaits atomic.Uint64
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
		if in.Timeout < 0 {
			errs = append(errs, fmt.Errorf("input %d (%s): timeout must not be negative", i, in.Name))
		}
		if in.Source == nil {
			errs = append(errs, fmt.Errorf("input %d (%s): no source", i, in.Name))
		}
	}
	if sink == nil {
		errs = append(errs, errors.New("no sink"))
	}
	if opts.MaxConcurrentPolls < 0 {
		errs = append(errs, fmt.Errorf("max concurrent polls must not be negative, got %d", opts.MaxConcurrentPolls))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating collector: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentPolls == 0 {
		opts.MaxConcurrentPolls = DefaultMaxConcurrentPolls
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
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
	ctl := make(map[string]*inputCtl, len(inputs))
	for _, in := range inputs {
		ctl[in.Name] = &inputCtl{interval: in.Interval, enabled: !in.Disabled, changed: make(chan struct{}, 1)}
	}
	return &Collector{
		inputs: inputs,
		sink:   sink,
		opts:   opts,
		log:    opts.Logger.With("component", "collect"),
		slots:  make(chan struct{}, opts.MaxConcurrentPolls),
		ctl:    ctl,
	}, nil
}

// Configure changes the interval, the enabled flag and optionally the
// strategy of the input called name, before or while Run runs; the input's
// goroutine takes the change at once, without waiting for its next read. A
// new interval starts a new period. It is safe for concurrent use.
func (c *Collector) Configure(name string, s Settings) error {
	ic, ok := c.ctl[name]
	if !ok {
		return fmt.Errorf("configuring input %q: %w", name, ErrUnknownInput)
	}
	if s.Interval <= 0 {
		return fmt.Errorf("configuring input %q: interval must be positive, got %s", name, s.Interval)
	}
	ic.mu.Lock()
	ic.interval, ic.enabled = s.Interval, s.Enabled
	if s.Strategy != nil {
		ic.strategy = s.Strategy
	}
	ic.mu.Unlock()
	select {
	case ic.changed <- struct{}{}:
	default:
	}
	return nil
}

// Settings returns the interval and enabled flag of the input called name
// (Strategy is nil) and whether there is such an input.
func (c *Collector) Settings(name string) (Settings, bool) {
	ic, ok := c.ctl[name]
	if !ok {
		return Settings{}, false
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return Settings{Interval: ic.interval, Enabled: ic.enabled}, true
}

// Stats returns the counters. It is safe to call at any time.
func (c *Collector) Stats() Stats {
	return Stats{
		Points:    c.points.Load(),
		Invalid:   c.invalid.Load(),
		Errors:    c.errs.Load(),
		Panics:    c.panics.Load(),
		PollWaits: c.pollWaits.Load(),
	}
}

// Run reads every input until ctx is done, then appends what the
// strategies still hold (within Options.FlushTimeout, so the sink must
// outlive Run), closes the sources that are io.Closers, waits for the
// per-source goroutines to exit and returns nil. It may be called once.
func (c *Collector) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("collector: Run called twice")
	}
	var wg sync.WaitGroup
	for _, in := range c.inputs {
		wg.Go(func() { c.runInput(ctx, in) })
	}
	wg.Wait()
	// Without sources there is nothing to wait for, but the agent's later
	// stages (uplink, spool) stop when Run returns: run until told to stop.
	<-ctx.Done()
	return nil
}

// runInput reads one input every interval until ctx is done.
func (c *Collector) runInput(ctx context.Context, in Input) {
	log := c.log.With("source", in.Name)
	ctl := c.ctl[in.Name]
	strategy := in.Strategy
	if strategy == nil {
		strategy = report.Realtime{}
	}
	interval, enabled, st := ctl.take()
	if st != nil {
		strategy = st
	}
	timeoutFor := func(interval time.Duration) time.Duration {
		if in.Timeout <= 0 || in.Timeout > interval {
			return interval
		}
		return in.Timeout
	}
	timeout := timeoutFor(interval)
	defer func() {
		// The last reads' points are still worth keeping: append them
		// with a context of their own, since ctx is done.
		if held := strategy.Flush(); len(held) > 0 {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FlushTimeout)
			c.append(fctx, log, held)
			cancel()
		}
		if cl, ok := in.Source.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				log.Warn("closing source failed", "err", err)
			}
		}
	}()

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	defer flushTimer.Stop()
	// apply takes a Configure change; it returns false when ctx is done.
	apply := func() bool {
		iv, en, st := ctl.take()
		if st != nil || (!en && enabled) {
			// A new strategy starts empty, and a disabled input holds
			// nothing: what the old one holds goes out now.
			if !c.append(ctx, log, strategy.Flush()) {
				return false
			}
		}
		if st != nil {
			strategy = st
		}
		if iv != interval {
			interval, timeout = iv, timeoutFor(iv)
			ticker.Reset(iv)
		}
		if en != enabled {
			log.Info("source settings changed", "enabled", en, "interval", iv)
			if en {
				ticker.Reset(interval)
			}
		}
		enabled = en
		return ctx.Err() == nil
	}
	// check is reused for every point so that validating costs no allocation.
	check := &outpostv1.TelemetryBatch{SeqFirst: 1, Points: make([]*outpostv1.Point, 1)}
	failing, warnedInvalid := false, false
	panicsInARow := 0
	for {
		if !enabled {
			select {
			case <-ctx.Done():
				return
			case <-ctl.changed:
				if !apply() {
					return
				}
			}
			continue
		}
		if !c.acquire(ctx) {
			return
		}
		now := c.opts.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		points, err := c.collectOnce(pctx, in.Source, now)
		cancel()
		<-c.slots
		// pause is the backoff after a panic; nil when the next read is
		// simply at the next tick.
		var pause *time.Timer
		var pe *PanicError
		switch {
		case errors.As(err, &pe):
			c.panics.Add(1)
			panicsInARow++
			wait := c.opts.PanicBackoff << min(panicsInARow-1, 20)
			wait = min(wait, c.opts.MaxPanicBackoff)
			log.Error("source panicked; retrying after a pause", "panic", pe.Value, "pause", wait, "stack", string(pe.Stack))
			pause = time.NewTimer(wait)
		case err != nil:
			panicsInARow = 0
			if ctx.Err() != nil {
				return // the read was cut short by the shutdown, not a fault
			}
			c.errs.Add(1)
			if !failing {
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
		check.Points[0] = nil
		ok := c.append(ctx, log, strategy.Offer(now, valid))
		for ok {
			next := ticker.C
			if pause != nil {
				next = pause.C
			}
			var changed bool
			ok, changed = c.wait(ctx, log, strategy, next, flushTimer, ctl.changed)
			if !changed {
				break
			}
			if ok = apply(); !enabled {
				break
			}
		}
		if pause != nil {
			pause.Stop()
			ticker.Reset(interval)
		}
		if !ok {
			return
		}
	}
}

// wait waits for next, appending what strategy holds whenever its deadline
// comes first; flushTimer is the stopped timer it uses for that. It
// returns false when ctx is done first, and changed true when a token on
// changed ended the wait.
func (c *Collector) wait(ctx context.Context, log *slog.Logger, strategy report.Strategy, next <-chan time.Time, flushTimer *time.Timer, changed <-chan struct{}) (ok, wasChanged bool) {
	for {
		var flushC <-chan time.Time
		if d := strategy.Deadline(); !d.IsZero() {
			flushTimer.Reset(max(d.Sub(c.opts.Now()), 0))
			flushC = flushTimer.C
		}
		select {
		case <-ctx.Done():
			flushTimer.Stop()
			return false, false
		case <-next:
			flushTimer.Stop()
			return true, false
		case <-changed:
			flushTimer.Stop()
			return true, true
		case <-flushC:
			if !c.append(ctx, log, strategy.Flush()) {
				return false, false
			}
		}
	}
}

// acquire takes a slot of the poll pool, waiting for one if need be. It
// returns false, without a slot, when ctx is done first.
func (c *Collector) acquire(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	c.pollWaits.Add(1)
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// append appends points to the sink and counts them. It returns false when
// ctx is done, whether or not the points were stored.
func (c *Collector) append(ctx context.Context, log *slog.Logger, points []*outpostv1.Point) bool {
	if len(points) == 0 {
		return ctx.Err() == nil
	}
	if err := c.sink.Append(ctx, points); err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.errs.Add(1)
		log.Error("storing points failed; they are lost", "points", len(points), "err", err)
		return true
	}
	c.points.Add(uint64(len(points)))
	return ctx.Err() == nil
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
