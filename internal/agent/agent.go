package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/collect"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/queue"
	"github.com/outpost-edge/outpost/internal/agent/report"
	"github.com/outpost-edge/outpost/internal/agent/uplink"
)

// The in-memory queue sits between report and uplink; the durable spool
// will implement the same two interfaces.
var (
	_ report.Sink  = (*queue.Memory)(nil)
	_ uplink.Queue = (*queue.Memory)(nil)
)

// Options are the parts of an agent that do not come from agent.yaml.
type Options struct {
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// DataDir holds the agent's state (the seq reservation, later the
	// spool). Required; created with mode 0700 if missing. Two agents must
	// not share one: Run locks it.
	DataDir string
	// Version is the agent version announced in the birth message and in
	// /metrics.
	Version string
}

// Stats is a snapshot of the agent's counters.
type Stats struct {
	// Running reports whether Run is between start and stop.
	Running bool
	// PointsCollected counts valid points read from sources.
	PointsCollected uint64
	// PointsInvalid counts points dropped for breaking the wire limits.
	PointsInvalid uint64
	// SourceErrors and SourcePanics count failed source reads.
	SourceErrors, SourcePanics uint64
	// BatchesCreated counts batches made by report.
	BatchesCreated uint64
	// BatchesSent counts publish attempts, retries included.
	BatchesSent uint64
	// BatchesAcked counts batches the broker accepted; PointsAcked their points.
	BatchesAcked, PointsAcked uint64
	// BatchesRejected counts batches the broker refused; they are not retried.
	BatchesRejected uint64
	// BatchesDropped counts batches dropped from the full queue; PointsDropped their points.
	BatchesDropped, PointsDropped uint64
	// PublishRetries counts publishes repeated after a failure.
	PublishRetries uint64
	// QueueBatches is how many batches wait to be published.
	QueueBatches int
	// Connected reports whether the MQTT connection is up.
	Connected bool
	// Connects counts MQTT connections made.
	Connects uint64
	// LastPublish is when the broker last accepted a batch; zero if never.
	LastPublish time.Time
}

// Agent is one edge agent: one device, one MQTT connection.
type Agent struct {
	cfg  config.Config
	opts Options
	log  *slog.Logger

	points    chan *outpostv1.Point
	collector *collect.Collector
	queue     *queue.Memory
	uplink    *uplink.Uplink

	started atomic.Bool
	running atomic.Bool
	// batcher is set by Run, once the data directory is locked.
	batcher atomic.Pointer[report.Batcher]

	httpMu   sync.Mutex // guards httpAddr
	httpAddr string
}

// New checks cfg and opts and builds an agent; nothing runs until Run.
func New(cfg config.Config, opts Options) (*Agent, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if opts.DataDir == "" {
		errs = append(errs, errors.New("no data directory"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("device", cfg.DeviceID)
	a := &Agent{cfg: cfg, opts: opts, log: log, points: make(chan *outpostv1.Point, 256)}

	inputs, err := collect.FromConfig(cfg.DeviceID, cfg.Sources)
	if err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	if a.collector, err = collect.New(inputs, chanSink(a.points), collect.Options{Logger: log}); err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	a.queue = queue.NewMemory(cfg.Telemetry.QueueMaxBatches)
	a.uplink, err = uplink.New(uplink.Config{
		DeviceID:       cfg.DeviceID,
		URL:            cfg.MQTT.URL,
		Username:       cfg.MQTTUsername(),
		Password:       cfg.MQTT.Password,
		KeepAlive:      cfg.MQTT.KeepAlive.D(),
		ConnectTimeout: cfg.MQTT.ConnectTimeout.D(),
		BackoffMin:     cfg.MQTT.BackoffMin.D(),
		BackoffMax:     cfg.MQTT.BackoffMax.D(),
		QoS:            byte(cfg.Telemetry.QoS),
		AgentVersion:   opts.Version,
		Logger:         log,
	}, a.queue)
	if err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	return a, nil
}

// Run runs the agent until ctx is done and returns once every goroutine it
// started has exited. Starting is all or nothing: when the data directory
// or the HTTP address cannot be used, Run returns an error before anything
// runs. A clean stop returns nil. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	if err := os.MkdirAll(a.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	unlock, err := lockDir(a.opts.DataDir)
	if err != nil {
		return fmt.Errorf("locking data directory %s (is another agent using it?): %w", a.opts.DataDir, err)
	}
	defer unlock()
	seq, err := report.OpenSeq(filepath.Join(a.opts.DataDir, report.SeqFileName), 0)
	if err != nil {
		return err
	}
	batcher, err := report.New(report.Options{
		MaxPoints: a.cfg.Telemetry.BatchMaxPoints,
		MaxDelay:  a.cfg.Telemetry.BatchMaxDelay.D(),
		Seq:       seq,
		Sink:      a.queue,
		Logger:    a.log,
	})
	if err != nil {
		return err
	}
	a.batcher.Store(batcher)
	var ln net.Listener
	if a.cfg.HTTP.Listen != "" {
		if ln, err = net.Listen("tcp", a.cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("starting the local HTTP server: %w", err)
		}
		a.httpMu.Lock()
		a.httpAddr = ln.Addr().String()
		a.httpMu.Unlock()
	}

	a.running.Store(true)
	defer a.running.Store(false)
	a.log.Info("agent starting", "version", a.opts.Version, "broker", a.cfg.MQTT.URL,
		"sources", len(a.cfg.Sources), "next_seq", seq.Next(), "http", a.HTTPAddr())

	g, gctx := errgroup.WithContext(ctx)
	// The uplink stops only after report has flushed into the queue, and
	// report only after the collector has stopped and closed a.points.
	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	g.Go(func() error { return a.uplink.Run(upCtx) })
	g.Go(func() error {
		defer stopUplink()
		return batcher.Run(context.WithoutCancel(ctx), a.points)
	})
	g.Go(func() error {
		defer close(a.points)
		return a.collector.Run(gctx)
	})
	if ln != nil {
		srv := &http.Server{
			Handler:           a.Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving local HTTP: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return nil
		})
	}
	err = g.Wait()
	st := a.Stats()
	a.log.Info("agent stopped", "points_collected", st.PointsCollected, "batches_acked", st.BatchesAcked,
		"batches_unsent", st.QueueBatches, "err", err)
	return err
}

// HTTPAddr returns the address the local HTTP server listens on once Run
// has started it, or "" when it is off.
func (a *Agent) HTTPAddr() string {
	a.httpMu.Lock()
	defer a.httpMu.Unlock()
	return a.httpAddr
}

// Stats returns a snapshot of the counters. It is safe to call at any time.
func (a *Agent) Stats() Stats {
	c, q, u := a.collector.Stats(), a.queue.Stats(), a.uplink.Stats()
	s := Stats{
		Running:         a.running.Load(),
		PointsCollected: c.Points,
		PointsInvalid:   c.Invalid,
		SourceErrors:    c.Errors,
		SourcePanics:    c.Panics,
		BatchesSent:     u.BatchesSent,
		BatchesAcked:    u.BatchesAcked,
		PointsAcked:     u.PointsAcked,
		BatchesRejected: u.BatchesRejected,
		BatchesDropped:  q.Dropped,
		PointsDropped:   q.DroppedPoints,
		PublishRetries:  u.Retries,
		QueueBatches:    q.Len,
		Connected:       u.Connected,
		Connects:        u.Connects,
		LastPublish:     u.LastPublish,
	}
	if b := a.batcher.Load(); b != nil {
		s.BatchesCreated = b.Stats().Batches
	}
	return s
}

// chanSink hands collected points to the batcher. It is the stand-in for the
// durable spool: Append returns once the batcher has the points, not once
// they are on disk.
type chanSink chan<- *outpostv1.Point

func (c chanSink) Append(ctx context.Context, points []*outpostv1.Point) error {
	for _, p := range points {
		select {
		case c <- p:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
