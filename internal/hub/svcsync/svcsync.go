package svcsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/protocol"
)

// Defaults of Options.
const (
	DefaultOfflineGrace     = 30 * time.Second
	DefaultResyncInterval   = 30 * time.Second
	DefaultPresenceInterval = 2 * time.Second
)

// OfflineOutput is the Output of an instance whose device is offline.
const OfflineOutput = "device offline"

// Registry is the service registry as the Syncer uses it. Methods are safe
// for concurrent use.
type Registry interface {
	Register(ctx context.Context, in registry.Instance) (registry.Instance, error)
	Deregister(ctx context.Context, service, id string) error
	SetHealth(ctx context.Context, service, id string, h registry.Health, output string) error
	// List returns the instances of service, "" for every service.
	List(ctx context.Context, service string) ([]registry.Instance, error)
}

// Shadows reads device shadows (the hub's shadow service).
type Shadows interface {
	// Get returns a shadow; an error matching shadow.ErrNotFound if it
	// does not exist.
	Get(ctx context.Context, deviceID, name string) (protocol.ShadowDocument, error)
}

// Device is a device as the Syncer sees it.
type Device struct {
	ID     string
	Online bool
}

// Devices lists the hub's devices.
type Devices interface {
	All(ctx context.Context) ([]Device, error)
}

// Options configure a Syncer.
type Options struct {
	Registry Registry
	Shadows  Shadows
	Devices  Devices
	Logger   *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// OfflineGrace is how long a device may be offline before its
	// instances turn critical; 0: DefaultOfflineGrace.
	OfflineGrace time.Duration
	// ResyncInterval is how often Run synchronizes every device; 0:
	// DefaultResyncInterval.
	ResyncInterval time.Duration
	// PresenceInterval is how often Run polls the presence of devices with
	// instances; 0: DefaultPresenceInterval.
	PresenceInterval time.Duration
}

// Syncer keeps the registry's agent instances in line with the devices'
// workloads shadows. Its methods are safe for concurrent use.
type Syncer struct {
	reg      Registry
	shadows  Shadows
	devices  Devices
	log      *slog.Logger
	now      func() time.Time
	grace    time.Duration
	resync   time.Duration
	presence time.Duration

	// mu serializes synchronizations and guards state.
	mu sync.Mutex
	// state is what the Syncer knows of each device with instances, or
	// offline.
	state map[string]*deviceState

	// pmu guards pending.
	pmu     sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
}

// deviceState is what the Syncer registered for a device.
type deviceState struct {
	// instances are the instances last written, by service.
	instances map[string]registry.Instance
	// offlineSince is when the Syncer first saw the device offline; zero
	// while it is online.
	offlineSince time.Time
	// markedOffline says whether the last synchronization marked the
	// instances critical for being offline.
	markedOffline bool
}

// New returns a Syncer.
func New(opts Options) (*Syncer, error) {
	var errs []error
	if opts.Registry == nil {
		errs = append(errs, errors.New("no registry"))
	}
	if opts.Shadows == nil {
		errs = append(errs, errors.New("no shadow service"))
	}
	if opts.Devices == nil {
		errs = append(errs, errors.New("no device service"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating the service sync: %w", err)
	}
	s := &Syncer{
		reg: opts.Registry, shadows: opts.Shadows, devices: opts.Devices,
		now: opts.Now, grace: opts.OfflineGrace, resync: opts.ResyncInterval, presence: opts.PresenceInterval,
		state: map[string]*deviceState{}, pending: map[string]struct{}{}, wake: make(chan struct{}, 1),
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.log = logger.With("component", "svcsync")
	if s.now == nil {
		s.now = time.Now
	}
	if s.grace <= 0 {
		s.grace = DefaultOfflineGrace
	}
	if s.resync <= 0 {
		s.resync = DefaultResyncInterval
	}
	if s.presence <= 0 {
		s.presence = DefaultPresenceInterval
	}
	return s, nil
}

// Notify tells the Syncer that a shadow changed; it is the shadow
// service's OnChange hook. It never blocks: Run synchronizes the device
// soon after.
func (s *Syncer) Notify(deviceID, name string) {
	if name != protocol.WorkloadsShadow {
		return
	}
	s.pmu.Lock()
	s.pending[deviceID] = struct{}{}
	s.pmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Syncer) takePending() []string {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	ids := slices.Sorted(maps.Keys(s.pending))
	clear(s.pending)
	return ids
}

// Run synchronizes every device, then each device whose workloads shadow
// changes (Notify), every device again every ResyncInterval, and devices
// whose presence changed every PresenceInterval, until ctx ends. Failures
// are logged and retried on the next round; Run returns nil.
func (s *Syncer) Run(ctx context.Context) error {
	if err := s.Resync(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("synchronizing service instances", "err", err)
	}
	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	presence := time.NewTicker(s.presence)
	defer presence.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			for _, id := range s.takePending() {
				err = errors.Join(err, s.SyncDevice(ctx, id))
			}
		case <-resync.C:
			err = s.Resync(ctx)
		case <-presence.C:
			err = s.CheckPresence(ctx)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("synchronizing service instances", "err", err)
		}
	}
}

// SyncDevice brings the instances of one device in line with its
// workloads shadow.
func (s *Syncer) SyncDevice(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wanted, err := s.wanted(ctx, id)
	if err != nil {
		return err
	}
	return s.reconcile(ctx, id, wanted, s.stateOf(id).instances)
}

// Resync synchronizes every device against what the registry holds: it
// also repairs instances changed or removed behind the Syncer's back and
// removes those of deleted devices.
func (s *Syncer) Resync(ctx context.Context) error {
	devs, err := s.devices.All(ctx)
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	all, err := s.reg.List(ctx, "")
	if err != nil {
		return fmt.Errorf("listing registry instances: %w", err)
	}
	current := map[string]map[string]registry.Instance{}
	for _, in := range all {
		if in.Source != registry.SourceAgent || in.Device == "" {
			continue
		}
		if current[in.Device] == nil {
			current[in.Device] = map[string]registry.Instance{}
		}
		current[in.Device][in.Service] = in
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	known := map[string]bool{}
	for _, d := range devs {
		known[d.ID] = true
		s.observe(d)
		wanted, err := s.wanted(ctx, d.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.reconcile(ctx, d.ID, wanted, current[d.ID]))
	}
	for id, cur := range current {
		if !known[id] {
			errs = append(errs, s.reconcile(ctx, id, nil, cur))
		}
	}
	for id := range s.state {
		if !known[id] {
			delete(s.state, id)
		}
	}
	return errors.Join(errs...)
}

// CheckPresence synchronizes the devices with instances whose presence
// changed: offline for longer than the grace period, or back online.
func (s *Syncer) CheckPresence(ctx context.Context) error {
	devs, err := s.devices.All(ctx)
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, d := range devs {
		st := s.state[d.ID]
		if st == nil || len(st.instances) == 0 {
			continue
		}
		s.observe(d)
		if s.offline(st) == st.markedOffline {
			continue
		}
		wanted, err := s.wanted(ctx, d.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.reconcile(ctx, d.ID, wanted, st.instances))
	}
	return errors.Join(errs...)
}

// stateOf returns a device's state, creating it; s.mu is held.
func (s *Syncer) stateOf(id string) *deviceState {
	st := s.state[id]
	if st == nil {
		st = &deviceState{instances: map[string]registry.Instance{}}
		s.state[id] = st
	}
	return st
}

// observe records a device's presence; s.mu is held.
func (s *Syncer) observe(d Device) {
	st := s.stateOf(d.ID)
	switch {
	case d.Online:
		st.offlineSince = time.Time{}
	case st.offlineSince.IsZero():
		st.offlineSince = s.now()
	}
}

// offline reports whether a device has been offline past the grace
// period; s.mu is held.
func (s *Syncer) offline(st *deviceState) bool {
	return !st.offlineSince.IsZero() && s.now().Sub(st.offlineSince) >= s.grace
}

// wanted reads a device's workloads shadow and returns the instances it
// should have, by service; s.mu is held.
func (s *Syncer) wanted(ctx context.Context, id string) (map[string]registry.Instance, error) {
	doc, err := s.shadows.Get(ctx, id, protocol.WorkloadsShadow)
	if errors.Is(err, shadow.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the workloads shadow of %s: %w", id, err)
	}
	desiredSec, _ := doc.State["desired"].(map[string]any)
	reportedSec, _ := doc.State["reported"].(map[string]any)
	desired, _ := protocol.DecodeWorkloadsDesired(desiredSec[protocol.WorkloadsKey])
	reports, _ := protocol.DecodeWorkloadReports(reportedSec[protocol.WorkloadsKey])
	st := s.stateOf(id)
	offline := s.offline(st)
	st.markedOffline = offline
	out := map[string]registry.Instance{}
	for name, d := range desired {
		spec, err := deployspec.Parse([]byte(d.Spec))
		if err != nil {
			s.log.Warn("workload spec does not parse", "device", id, "service", name, "err", err)
			continue
		}
		if len(spec.Ports) == 0 {
			continue
		}
		r, reported := reports[name]
		if r.Address == "" {
			// Without an address there is nothing to resolve to: an
			// agent that does not report one yet, or an old agent.
			continue
		}
		ports := make([]string, len(spec.Ports))
		for i, p := range spec.Ports {
			ports[i] = strconv.Itoa(p)
		}
		in := registry.Instance{
			Service: name, ID: id, Address: r.Address, Port: spec.Ports[0],
			Meta:   map[string]string{"ports": strings.Join(ports, ","), "revision": d.Revision},
			Source: registry.SourceAgent, Device: id,
		}
		if r.Version != "" {
			in.Meta["version"] = r.Version
		}
		switch {
		case offline:
			in.Health, in.Output = registry.Critical, OfflineOutput
		case reported && r.Revision == d.Revision && r.Healthy && r.State == "running":
			in.Health = registry.Passing
		default:
			in.Health, in.Output = registry.Critical, reportOutput(r, d.Revision)
		}
		out[name] = in
	}
	return out, nil
}

// reportOutput says why a report is not passing.
func reportOutput(r protocol.WorkloadReport, revision string) string {
	out := r.State
	if out == "" {
		out = "not reported"
	}
	if r.State == "running" && !r.Healthy {
		out += ", unhealthy"
	}
	if r.Revision != revision {
		out += " (revision " + r.Revision + ", want " + revision + ")"
	}
	if r.Error != "" {
		out += ": " + r.Error
	}
	return out
}

// reconcile writes the registry changes that turn current into wanted
// and records the result as the device's state; s.mu is held.
func (s *Syncer) reconcile(ctx context.Context, id string, wanted, current map[string]registry.Instance) error {
	st := s.stateOf(id)
	done := map[string]registry.Instance{}
	var errs []error
	for name, cur := range current {
		if _, ok := wanted[name]; ok {
			continue
		}
		if err := s.reg.Deregister(ctx, name, id); err != nil && !errors.Is(err, registry.ErrNotFound) {
			errs = append(errs, fmt.Errorf("deregistering %s/%s: %w", name, id, err))
			done[name] = cur // try again next time
			continue
		}
		s.log.Info("service instance deregistered", "service", name, "device", id)
	}
	for name, want := range wanted {
		cur, ok := current[name]
		if !ok || cur.Address != want.Address || cur.Port != want.Port || !maps.Equal(cur.Meta, want.Meta) {
			got, err := s.reg.Register(ctx, want)
			if err != nil {
				errs = append(errs, fmt.Errorf("registering %s/%s: %w", name, id, err))
				continue
			}
			s.log.Info("service instance registered", "service", name, "device", id, "address", want.Address, "port", want.Port)
			cur = got
		}
		if cur.Health != want.Health || cur.Output != want.Output {
			if err := s.reg.SetHealth(ctx, name, id, want.Health, want.Output); err != nil {
				errs = append(errs, fmt.Errorf("setting the health of %s/%s: %w", name, id, err))
				continue
			}
		}
		done[name] = want
	}
	st.instances = done
	return errors.Join(errs...)
}
