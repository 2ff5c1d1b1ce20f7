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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/collect"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/jobs"
	"github.com/outpost-edge/outpost/internal/agent/ota"
	"github.com/outpost-edge/outpost/internal/agent/shadow"
	"github.com/outpost-edge/outpost/internal/agent/slots"
	"github.com/outpost-edge/outpost/internal/agent/spool"
	"github.com/outpost-edge/outpost/internal/agent/uplink"
	"github.com/outpost-edge/outpost/internal/agent/workload"
	"github.com/outpost-edge/outpost/protocol"
)

// The spool sits between collect and uplink.
var (
	_ collect.Sink = spoolSink{}
	_ uplink.Spool = (*spool.Spool)(nil)
)

// stopGrace is how long the uplink keeps publishing, while connected,
// after the collector has stopped.
const stopGrace = 2 * time.Second

// appendGrace is how long a reading taken just before the stop may still
// take to be stored: the commit is milliseconds away unless the spool
// blocks (overflow: block).
const appendGrace = time.Second

// Options are the parts of an agent that do not come from agent.yaml.
type Options struct {
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// DataDir holds the agent's state: the spool (unless spool.path puts it
	// elsewhere) and the seq floor. Required; created with mode 0700 if
	// missing. Two agents must not share one: Run locks it.
	DataDir string
	// Version is the agent version announced in the status messages and
	// in /metrics.
	Version string
	// LogLevel is the level variable of Logger's handler: the shadow's
	// log_level sets it. nil: log_level is reported but changes nothing.
	LogLevel *slog.LevelVar
	// CgroupRoot is where the cgroup v2 hierarchy the services' limits
	// use is mounted; "" means /sys/fs/cgroup. Tests point it elsewhere.
	CgroupRoot string
}

// Stats is a snapshot of the agent's counters.
type Stats struct {
	// Running reports whether Run is between start and stop.
	Running bool
	// PointsCollected counts points the sources read and the spool stored.
	PointsCollected uint64
	// PointsInvalid counts points dropped for breaking the wire limits.
	PointsInvalid uint64
	// SourceErrors and SourcePanics count failed source reads (errors
	// include failed appends to the spool).
	SourceErrors, SourcePanics uint64
	// BatchesSent counts publish attempts, retries included.
	BatchesSent uint64
	// BatchesAcked counts batches the broker accepted; PointsAcked their points.
	BatchesAcked, PointsAcked uint64
	// BatchesRejected counts batches the broker refused; they are deleted,
	// not retried. PointsRejected counts their points.
	BatchesRejected, PointsRejected uint64
	// PublishRetries counts publishes repeated after a failure.
	PublishRetries uint64
	// PointsBacklog counts the acknowledged points that were published as
	// backlog after a (re)connect; Draining reports a backlog in progress.
	PointsBacklog uint64
	Draining      bool
	// Connected reports whether the MQTT connection is up.
	Connected bool
	// Connects counts MQTT connections made.
	Connects uint64
	// StatusSent counts online status messages the broker acknowledged;
	// Connected with StatusSent > 0 is the self-check an update trial
	// must pass before it commits (package slots).
	StatusSent uint64
	// LastPublish is when the broker last accepted a batch; zero if never.
	LastPublish time.Time

	// SpoolPoints is how many points wait in the spool; SpoolBytes how
	// much of spool.max_bytes they use; SpoolFileBytes the file's size.
	SpoolPoints, SpoolBytes, SpoolFileBytes int64
	// SpoolDropped counts points the spool dropped undelivered (overflow
	// or max age) since its file was created.
	SpoolDropped uint64
	// SpoolOldestAge is how long the oldest waiting point has waited; 0
	// when the spool is empty.
	SpoolOldestAge time.Duration
	// SpoolCorruptResets counts corrupt spool files moved aside (see
	// spool.Stats.CorruptResets); SpoolCorruptFile is where this run's
	// start moved one, if it did.
	SpoolCorruptResets uint64
	SpoolCorruptFile   string
	// SpoolCommits counts the spool's write transactions in this run and
	// SpoolCommitTime the time they took, fsync included.
	SpoolCommits    uint64
	SpoolCommitTime time.Duration
	// NextSeq is the seq the next stored point gets.
	NextSeq uint64
}

// Agent is one edge agent: one device, one MQTT connection.
type Agent struct {
	cfg  config.Config
	opts Options
	log  *slog.Logger

	collector *collect.Collector
	// shadow keeps the running settings in line with the device shadow.
	shadow *shadow.Client
	// jobs runs OTA jobs; ota is its client of the hub's TUF repository,
	// created at the first job.
	jobs  *jobs.Runner
	otaMu sync.Mutex
	ota   *ota.Client
	// supervisor runs the deployed services and workloads reconciles
	// them with the workloads shadow; Run sets both before the uplink
	// starts (nil when workloads.enabled is off).
	supervisor *workload.Supervisor
	workloads  *workloads
	// restart ends Run with slots.ErrRestart (an agent update was staged).
	restart   context.CancelCauseFunc
	restartMu sync.Mutex

	started atomic.Bool
	running atomic.Bool
	// spool and uplink are set by Run, once the data directory is locked.
	spool  atomic.Pointer[spool.Spool]
	uplink atomic.Pointer[uplink.Uplink]

	httpMu   sync.Mutex // guards httpAddr and apiAddr
	httpAddr string
	apiAddr  string
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
	if cfg.OTA.CoAPURL != "" && !ota.CoAPSupported {
		errs = append(errs, errors.New("ota.coap_url: this agent was built without CoAP; build it with -tags coap or remove the key"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("device", cfg.DeviceID)
	a := &Agent{cfg: cfg, opts: opts, log: log}

	inputs, err := collect.FromConfig(cfg.DeviceID, cfg.Sources)
	if err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	if a.collector, err = collect.New(inputs, spoolSink{a}, collect.Options{Logger: log, MaxConcurrentPolls: cfg.Collect.MaxConcurrentPolls}); err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	level := slog.LevelInfo
	if opts.LogLevel != nil {
		level = opts.LogLevel.Level()
	}
	a.shadow, err = shadow.New(shadow.Options{
		Config:   cfg,
		LogLevel: level,
		Path:     filepath.Join(opts.DataDir, shadow.FileName),
		Apply:    a.applySettings,
		Publish:  a.publish,
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	a.jobs, err = jobs.New(jobs.Options{
		DeviceID:  cfg.DeviceID,
		DataDir:   opts.DataDir,
		Transport: jobsTransport{a},
		Handlers:  a.jobHandlers(),
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("creating agent: %w", err)
	}
	return a, nil
}

// jobsTransport publishes the jobs runner's requests over the uplink.
type jobsTransport struct{ a *Agent }

func (t jobsTransport) Publish(ctx context.Context, topic string, payload []byte) error {
	return t.a.publish(ctx, topic, payload)
}

// requestRestart ends Run with slots.ErrRestart, so that the process
// exits and starts again into the staged update.
func (a *Agent) requestRestart() {
	a.restartMu.Lock()
	defer a.restartMu.Unlock()
	if a.restart != nil {
		a.restart(slots.ErrRestart)
	}
}

// subscriptions are the topics the shadow client, the jobs runner and the
// workloads reconciler need.
func (a *Agent) subscriptions() []string {
	subs := append(a.shadow.Subscriptions(), a.jobs.Subscriptions()...)
	if a.workloads != nil {
		subs = append(subs, a.workloads.Subscriptions()...)
	}
	return subs
}

// onMessage routes a message on one of subscriptions.
func (a *Agent) onMessage(topic string, payload []byte) {
	if strings.HasPrefix(topic, protocol.JobsTopicPrefix(a.cfg.DeviceID)) {
		a.jobs.HandleMessage(topic, payload)
		return
	}
	if a.workloads != nil && a.workloads.Handles(topic) {
		a.workloads.HandleMessage(topic, payload)
		return
	}
	a.shadow.HandleMessage(topic, payload)
}

// onSubscribed runs after each connection's subscriptions are in place.
func (a *Agent) onSubscribed(ctx context.Context) {
	a.shadow.Connected(ctx)
	a.jobs.Connected(ctx)
	if a.workloads != nil {
		a.workloads.Connected(ctx)
	}
}

// publish publishes a shadow request over the uplink.
func (a *Agent) publish(ctx context.Context, topic string, payload []byte) error {
	up := a.uplink.Load()
	if up == nil {
		return uplink.ErrNotConnected
	}
	return up.Publish(ctx, topic, payload)
}

// applySettings makes next, from the shadow, the running settings; prev
// is what runs now. The spool and the uplink are changed once Run has
// created them; before, Run creates them with the shadow's settings.
func (a *Agent) applySettings(prev, next shadow.Settings) {
	if next.LogLevel != prev.LogLevel && a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(next.LogLevel)
	}
	for name, n := range next.Sources {
		p, ok := prev.Sources[name]
		if ok && *p == *n {
			continue
		}
		set := collect.Settings{Interval: n.Interval.D(), Enabled: n.Enabled}
		if !ok || p.Report != n.Report {
			st, err := collect.StrategyFor(n.Report)
			if err != nil {
				a.log.Error("building a report strategy from the shadow failed; keeping the previous one", "source", name, "err", err)
			} else {
				set.Strategy = st
			}
		}
		if err := a.collector.Configure(name, set); err != nil {
			a.log.Error("changing a source from the shadow failed", "source", name, "err", err)
		}
	}
	if sp := a.spool.Load(); sp != nil && (next.SpoolMaxBytes != prev.SpoolMaxBytes || next.SpoolMaxAge != prev.SpoolMaxAge || next.SpoolOverflow != prev.SpoolOverflow) {
		if err := sp.SetLimits(spoolLimits(next)); err != nil {
			a.log.Error("changing the spool limits from the shadow failed", "err", err)
		}
	}
	if up := a.uplink.Load(); up != nil && next.QoS != prev.QoS {
		if err := up.SetQoS(byte(next.QoS)); err != nil {
			a.log.Error("changing the telemetry QoS from the shadow failed", "err", err)
		}
	}
}

func spoolLimits(s shadow.Settings) spool.Limits {
	return spool.Limits{MaxBytes: int64(s.SpoolMaxBytes), MaxAge: s.SpoolMaxAge.D(), Overflow: spool.Overflow(s.SpoolOverflow)}
}

// spoolPath is where the spool file lives: spool.path, relative to the
// data directory, or spool.db in it.
func (a *Agent) spoolPath() string {
	p := a.cfg.Spool.Path
	switch {
	case p == "":
		return filepath.Join(a.opts.DataDir, config.DefaultSpoolFileName)
	case filepath.IsAbs(p):
		return p
	default:
		return filepath.Join(a.opts.DataDir, p)
	}
}

// Run runs the agent until ctx is done and returns once every goroutine it
// started has exited. Starting is all or nothing: when the data directory,
// the spool or the HTTP address cannot be used, Run returns an error before
// anything runs (a corrupt spool file is not such a case: it is moved aside
// and the agent starts with an empty spool). A clean stop returns nil.
//
// The pipeline runs collect → spool → uplink. It stops front to back: the
// collector first (its last readings are stored), then the uplink, which
// goes on publishing for up to 2s while connected, then the spool's writer.
// What was not delivered stays in the spool for the next run. Run may be
// called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	ctx, restart := context.WithCancelCause(ctx)
	defer restart(nil)
	a.restartMu.Lock()
	a.restart = restart
	a.restartMu.Unlock()
	if err := os.MkdirAll(a.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	unlock, err := lockDir(a.opts.DataDir)
	if err != nil {
		return fmt.Errorf("locking data directory %s (is another agent using it?): %w", a.opts.DataDir, err)
	}
	defer unlock()

	// The saved shadow state runs from the start, hub or no hub.
	a.shadow.ApplySaved()
	settings := a.shadow.Settings()
	lim := spoolLimits(settings)
	sc := a.cfg.Spool
	sp, err := spool.Open(spool.Options{
		Path:           a.spoolPath(),
		SeqFloorPath:   filepath.Join(a.opts.DataDir, spool.FloorFileName),
		CommitInterval: sc.CommitInterval.D(),
		CommitPoints:   sc.CommitPoints,
		MaxBytes:       lim.MaxBytes,
		MaxAge:         lim.MaxAge,
		Overflow:       lim.Overflow,
		Logger:         a.log,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := sp.Close(); err != nil {
			a.log.Error("closing the spool failed", "err", err)
		}
	}()
	a.spool.Store(sp)

	if a.cfg.Workloads.Enabled {
		// Before the uplink, which takes the reconciler's subscriptions,
		// and before Run's goroutines, which read a.workloads.
		if err := a.startWorkloads(); err != nil {
			return err
		}
	}

	t := a.cfg.Telemetry
	up, err := uplink.New(uplink.Config{
		DeviceID:       a.cfg.DeviceID,
		URL:            a.cfg.MQTT.URL,
		Username:       a.cfg.MQTTUsername(),
		Password:       a.cfg.MQTT.Password,
		KeepAlive:      a.cfg.MQTT.KeepAlive.D(),
		ConnectTimeout: a.cfg.MQTT.ConnectTimeout.D(),
		BackoffMin:     a.cfg.MQTT.BackoffMin.D(),
		BackoffMax:     a.cfg.MQTT.BackoffMax.D(),
		QoS:            byte(settings.QoS),
		BatchMaxPoints: t.BatchMaxPoints,
		DrainRate:      t.DrainRate,
		StatusInterval: t.StatusInterval.D(),
		Zstd:           t.Compression == config.CompressionZstd,
		StopGrace:      stopGrace,
		AgentVersion:   a.opts.Version,
		Logger:         a.log,
		Subscriptions:  a.subscriptions(),
		OnMessage:      a.onMessage,
		OnSubscribed:   a.onSubscribed,
	}, sp)
	if err != nil {
		return err
	}
	a.uplink.Store(up)

	var ln net.Listener
	if a.cfg.HTTP.Listen != "" {
		if ln, err = net.Listen("tcp", a.cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("starting the local HTTP server: %w", err)
		}
		a.httpMu.Lock()
		a.httpAddr = ln.Addr().String()
		a.httpMu.Unlock()
	}
	api, err := a.openAPI()
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return err
	}
	if api != nil {
		defer api.close(a.log)
	}

	a.running.Store(true)
	defer a.running.Store(false)
	st := sp.Stats()
	a.log.Info("agent starting", "version", a.opts.Version, "broker", a.cfg.MQTT.URL, "sources", len(a.cfg.Sources),
		"spool", a.spoolPath(), "spool_points", st.Points, "next_seq", st.NextSeq, "http", a.HTTPAddr(), "api", a.APIAddr())

	g, gctx := errgroup.WithContext(ctx)
	// Later stages outlive earlier ones: the spool's writer stops after the
	// uplink, the uplink after the collector.
	spCtx, stopSpool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpool()
	upCtx, stopUplink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUplink()
	g.Go(func() error { return sp.Run(spCtx) })
	g.Go(func() error {
		defer stopSpool()
		return up.Run(upCtx)
	})
	g.Go(func() error {
		defer stopUplink()
		return a.collector.Run(gctx)
	})
	g.Go(func() error { return a.shadow.Run(gctx) })
	g.Go(func() error { return a.jobs.Run(gctx) })
	if a.workloads != nil {
		g.Go(func() error { return a.supervisor.Run(gctx) })
		g.Go(func() error { return a.workloads.Run(gctx) })
	}
	if api != nil {
		api.serve(gctx, g, a.log)
	}
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
	if cause := context.Cause(ctx); err == nil && errors.Is(cause, slots.ErrRestart) {
		err = cause
	}
	s := a.Stats()
	a.log.Info("agent stopped", "points_collected", s.PointsCollected, "points_acked", s.PointsAcked,
		"spool_points", s.SpoolPoints, "spool_dropped", s.SpoolDropped, "err", err)
	return err
}

// HTTPAddr returns the address the local HTTP server listens on once Run
// has started it, or "" when it is off.
func (a *Agent) HTTPAddr() string {
	a.httpMu.Lock()
	defer a.httpMu.Unlock()
	return a.httpAddr
}

// Stats returns a snapshot of the counters. It is safe to call at any time;
// the spool and uplink parts are zero before Run has opened them.
func (a *Agent) Stats() Stats {
	c := a.collector.Stats()
	s := Stats{
		Running:         a.running.Load(),
		PointsCollected: c.Points,
		PointsInvalid:   c.Invalid,
		SourceErrors:    c.Errors,
		SourcePanics:    c.Panics,
	}
	if up := a.uplink.Load(); up != nil {
		u := up.Stats()
		s.BatchesSent, s.BatchesAcked, s.PointsAcked = u.BatchesSent, u.BatchesAcked, u.PointsAcked
		s.BatchesRejected, s.PointsRejected, s.PublishRetries = u.BatchesRejected, u.PointsRejected, u.Retries
		s.PointsBacklog, s.Draining = u.PointsBacklog, u.Draining
		s.Connected, s.Connects, s.LastPublish = u.Connected, u.Connects, u.LastPublish
		s.StatusSent = u.StatusSent
	}
	if sp := a.spool.Load(); sp != nil {
		st := sp.Stats()
		s.SpoolPoints, s.SpoolBytes, s.SpoolFileBytes = st.Points, st.Bytes, st.FileBytes
		s.SpoolDropped, s.SpoolCorruptResets, s.SpoolCorruptFile = st.Dropped, st.CorruptResets, st.CorruptFile
		s.SpoolCommits, s.SpoolCommitTime, s.NextSeq = st.Commits, st.CommitTime, st.NextSeq
		if !st.Oldest.IsZero() {
			s.SpoolOldestAge = max(time.Since(st.Oldest), 0)
		}
	}
	return s
}

// spoolSink is the collector's Sink: the spool, once Run has opened it.
type spoolSink struct{ a *Agent }

// Append stores points in the spool. A reading taken just before the stop
// is still stored, within appendGrace after ctx ends.
func (s spoolSink) Append(ctx context.Context, points []*outpostv1.Point) error {
	sp := s.a.spool.Load()
	if sp == nil {
		return errors.New("storing points: the spool is not open")
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var timer *time.Timer
	var mu sync.Mutex // guards timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(appendGrace, cancel)
	})
	defer func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
	}()
	if err := sp.Append(actx, points); err != nil {
		return fmt.Errorf("storing points: %w", err)
	}
	return nil
}

// startWorkloads creates the supervisor and the workloads reconciler,
// which applies the saved workloads at once.
func (a *Agent) startWorkloads() error {
	wc := a.cfg.Workloads
	sup, err := workload.New(workload.Options{
		DataDir:    a.opts.DataDir,
		Logger:     a.log,
		CgroupRoot: a.opts.CgroupRoot,
		StopGrace:  wc.StopGrace.D(),
		LogLines:   wc.LogLines,
		Address:    wc.Address,
	})
	if err != nil {
		return fmt.Errorf("starting the workload supervisor: %w", err)
	}
	w, err := newWorkloads(workloadsOptions{
		DeviceID:   a.cfg.DeviceID,
		DataDir:    a.opts.DataDir,
		Address:    wc.Address,
		Advertise:  wc.Advertised(),
		Supervisor: sup,
		Publish:    a.publish,
		Fetch:      a.fetchService,
		Logger:     a.log,
	})
	if err != nil {
		return err
	}
	a.supervisor, a.workloads = sup, w
	return nil
}
