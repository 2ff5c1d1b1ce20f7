// Package demo runs `outpost demo`: a hub and a few simulated devices in one
// process. The devices are registered and joined through the hub's device
// service and run the real agent pipeline with simulated sensors, so the demo
// exercises the same code paths as a real fleet.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/agent"
	agentconfig "github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/hub"
	"golang.org/x/sync/errgroup"
)

// Options configure a demo run.
type Options struct {
	// Devices is how many simulated devices to run (1 to 1000).
	Devices int
	// Duration, if positive, stops the demo after that long.
	Duration time.Duration
	// DataDir keeps the hub's and agents' data; empty means a temporary
	// directory removed on exit.
	DataDir string
	// HTTPAddr and MQTTAddr are the hub's listen addresses. If one is busy
	// and FallbackToFreePort is set, a free port is used instead.
	HTTPAddr, MQTTAddr string
	FallbackToFreePort bool
	Version            string
}

// Validate reports every problem of o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Devices < 1 || o.Devices > 1000 {
		errs = append(errs, fmt.Errorf("--devices must be 1 to 1000, got %d", o.Devices))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("--duration must not be negative, got %s", o.Duration))
	}
	return errors.Join(errs...)
}

// Run runs the demo until ctx ends or Duration passes. It prints the
// banner and a closing summary to out and logs to logger.
func Run(ctx context.Context, o Options, out io.Writer, logger *slog.Logger) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	dir := o.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "outpost-demo-"); err != nil {
			return fmt.Errorf("creating demo directory: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	cfg := hub.Default()
	cfg.DataDir = filepath.Join(dir, "hub")
	cfg.HTTPAddr, cfg.MQTTAddr = o.HTTPAddr, o.MQTTAddr
	h, err := newHub(ctx, cfg, o.FallbackToFreePort, logger)
	if err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if o.Duration > 0 {
		runCtx, stop = context.WithTimeout(ctx, o.Duration)
		defer stop()
	}
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()

	agents, err := startAgents(runCtx, h, o, dir, logger)
	if err != nil {
		stopHub()
		return errors.Join(err, <-hubDone)
	}
	printBanner(out, h, cfg, o)

	// Agents stop first so that their last batches reach the hub, then
	// the hub drains and closes its store.
	agentErr := agents.g.Wait()
	stopHub()
	hubErr := <-hubDone
	printSummary(out, agents.list)
	if ctx.Err() == nil && runCtx.Err() == nil && agentErr == nil && hubErr == nil {
		return nil
	}
	return errors.Join(agentErr, hubErr)
}

func newHub(ctx context.Context, cfg hub.Config, fallback bool, logger *slog.Logger) (*hub.Hub, error) {
	h, err := hub.New(ctx, cfg, logger)
	if err == nil || !fallback || !errors.Is(err, syscall.EADDRINUSE) {
		return h, err
	}
	logger.Warn("a default port is busy; the demo uses free ports instead", "err", err)
	cfg.HTTPAddr, cfg.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0"
	return hub.New(ctx, cfg, logger)
}

type runningAgents struct {
	g    *errgroup.Group
	list []*agent.Agent
	ids  []string
}

func startAgents(ctx context.Context, h *hub.Hub, o Options, dir string, logger *slog.Logger) (*runningAgents, error) {
	ra := &runningAgents{g: &errgroup.Group{}}
	for i := 1; i <= o.Devices; i++ {
		id := fmt.Sprintf("demo-%02d", i)
		en, err := h.Devices().Add(ctx, id, map[string]string{"site": "demo", "simulated": "true"})
		if err != nil {
			return nil, fmt.Errorf("registering %s: %w", id, err)
		}
		cred, err := h.Devices().Join(ctx, en.JoinToken)
		if err != nil {
			return nil, fmt.Errorf("joining %s: %w", id, err)
		}
		cfg := agentconfig.Default()
		cfg.DeviceID = cred.DeviceID
		cfg.HubURL = h.HTTPURL()
		cfg.MQTT.URL = h.MQTTURL()
		cfg.MQTT.Password = cred.Password
		if i > 1 {
			// One machine, one local API port: demo-01 serves it.
			cfg.API.Listen = ""
		}
		a, err := agent.New(cfg, agent.Options{
			Logger:  logger,
			DataDir: filepath.Join(dir, "agents", id),
			Version: o.Version,
		})
		if err != nil {
			return nil, fmt.Errorf("starting agent %s: %w", id, err)
		}
		ra.list = append(ra.list, a)
		ra.ids = append(ra.ids, id)
		ra.g.Go(func() error { return a.Run(ctx) })
	}
	return ra, nil
}

func printBanner(out io.Writer, h *hub.Hub, cfg hub.Config, o Options) {
	pwFile := filepath.Join(cfg.DataDir, hub.AdminPasswordFileName)
	pw, _ := h.GeneratedAdminPassword()
	fmt.Fprintf(out, `
Outpost demo: a hub and %d simulated devices (demo-01 …) are running.

  API / dashboard  %s
  MQTT broker      %s
  admin user       %s
  admin password   %s   (also in %s)

Try, in another terminal:
  outpost login --hub %s --user admin --password-stdin < %s
  outpost devices ls
  outpost telemetry query demo-01 --since 5m
  curl -s %s/metrics | grep outpost_ingest

`, o.Devices, h.HTTPURL(), h.MQTTURL(), hub.AdminUser, pw, pwFile, h.HTTPURL(), pwFile, h.HTTPURL())
	fmt.Fprintf(out, "Dashboard: open %s/ in a browser and sign in as %s with the password above.\n", h.HTTPURL(), hub.AdminUser)
	if o.Duration > 0 {
		fmt.Fprintf(out, "The demo stops by itself after %s.\n", o.Duration)
	} else {
		fmt.Fprintln(out, "Press Ctrl-C to stop.")
	}
}

func printSummary(out io.Writer, agents []*agent.Agent) {
	var collected, acked uint64
	for _, a := range agents {
		s := a.Stats()
		collected += s.PointsCollected
		acked += s.PointsAcked
	}
	fmt.Fprintf(out, "Demo stopped: %d devices collected %d points; the hub acknowledged %d.\n", len(agents), collected, acked)
}
