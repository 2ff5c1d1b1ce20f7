package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/outpost-edge/outpost/internal/hub/periodic"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// State of a deployment.
type State string

// Deployment states.
const (
	// Rolling: batches of devices are being moved to the current revision.
	Rolling State = "rolling"
	// Complete: every matching device has the current revision.
	Complete State = "complete"
	// Failed: a batch had more unavailable devices than the strategy
	// allows; its devices went back to the previous revision. Applying the
	// spec again restarts the rollout.
	Failed State = "failed"
)

// ApplyResult says what Apply did.
type ApplyResult string

// Apply results.
const (
	Created   ApplyResult = "created"
	Updated   ApplyResult = "updated"
	Unchanged ApplyResult = "unchanged"
)

// Revision is one revision of a deployment's spec.
type Revision struct {
	// Spec is the canonical JSON of the spec (deployspec.Spec.Canonical).
	Spec     json.RawMessage `json:"spec"`
	Revision string          `json:"revision"`
}

// Assignment is the revision the hub wrote to one device's workloads
// shadow.
type Assignment struct {
	Revision string `json:"revision"`
	// Batch is the batch (from 1) that moved the device to the current
	// revision; 0 when the device got its revision outside a batch (it
	// joined, or was put back on the previous revision).
	Batch      int       `json:"batch"`
	AssignedAt time.Time `json:"assigned_at"`
}

// Deployment is a deployment's whole state, as stored.
type Deployment struct {
	Name string `json:"name"`
	// Spec is the canonical JSON of the current spec; Revision its
	// revision.
	Spec     json.RawMessage `json:"spec"`
	Revision string          `json:"revision"`
	// Previous is the last revision that completed, if any: what devices
	// run while a newer one rolls out, and what a failed batch goes back to.
	Previous *Revision `json:"previous,omitempty"`
	State    State     `json:"state"`
	// Message says why the deployment failed or completed.
	Message string `json:"message,omitempty"`
	// Batch is the current batch, from 1; 0 before the first.
	Batch int `json:"batch"`
	// BatchDoneAt is when the current batch was seen done; the next one
	// starts strategy.pause later.
	BatchDoneAt time.Time `json:"batch_done_at,omitzero"`
	// Unavailable are the devices of earlier batches of this rollout that
	// did not become healthy in time and were tolerated
	// (strategy.max_unavailable counts them too).
	Unavailable []string `json:"unavailable,omitempty"`
	// Devices maps each device the hub gave the service to its assignment.
	Devices   map[string]Assignment `json:"devices"`
	CreatedAt time.Time             `json:"created_at"`
	UpdatedAt time.Time             `json:"updated_at"`
}

// ParsedSpec returns the current spec.
func (d *Deployment) ParsedSpec() (deployspec.Spec, error) {
	sp, err := deployspec.Parse(d.Spec)
	if err != nil {
		return sp, fmt.Errorf("reading the stored spec of deployment %s: %w", d.Name, err)
	}
	return sp, nil
}

// Artifact returns the current spec's NAME@VERSION.
func (d *Deployment) Artifact() string {
	var sp struct{ Artifact string }
	_ = json.Unmarshal(d.Spec, &sp)
	return sp.Artifact
}

// Device is a device as deployments see it.
type Device struct {
	ID     string
	Labels map[string]string
	Online bool
}

// Devices reads the hub's devices. Methods are safe for concurrent use.
type Devices interface {
	// All returns every device.
	All(ctx context.Context) ([]Device, error)
	// Get returns one device; an error matching ErrDeviceNotFound if the
	// hub does not know it.
	Get(ctx context.Context, id string) (Device, error)
}

// Shadows reads and writes device shadows (the hub's shadow service).
// Methods are safe for concurrent use.
type Shadows interface {
	PatchDesired(ctx context.Context, deviceID, name string, patch []byte, version *int64) (protocol.ShadowDocument, error)
	// Get returns a shadow; an error matching shadow.ErrNotFound if it
	// does not exist.
	Get(ctx context.Context, deviceID, name string) (protocol.ShadowDocument, error)
}

// Artifacts tells whether an artifact is published, and its type.
type Artifacts interface {
	ArtifactType(name, version string) (string, error)
}

// Options configure a Service.
type Options struct {
	Store     DocumentStore
	Shadows   Shadows
	Devices   Devices
	Artifacts Artifacts
	// Broker carries log requests; nil: Logs returns ErrLogsUnavailable.
	Broker Broker
	// LogsSubscriptionID is the broker's id for the inline subscription to
	// protocol.LogsResponseFilter.
	LogsSubscriptionID int
	// LogsTimeout is how long Logs waits for a device; 0: DefaultLogsTimeout.
	LogsTimeout time.Duration
	// Registerer, when not nil, gets the service's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Service runs deployments. It is safe for concurrent use.
type Service struct {
	store     docStore
	shadows   Shadows
	devices   Devices
	artifacts Artifacts
	log       *slog.Logger
	now       func() time.Time
	logs      *logRequests
	assigned  *prometheus.CounterVec
	states    *prometheus.GaugeVec
	// mu serializes changes to deployments: Step and the operator's
	// commands.
	mu sync.Mutex
}

// NewService returns a Service; with a Broker it subscribes to the
// devices' log answers.
func NewService(opts Options) (*Service, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store: docStore{opts.Store}, shadows: opts.Shadows, devices: opts.Devices, artifacts: opts.Artifacts,
		log: logger.With("component", "deploy"), now: time.Now,
		assigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_deploy_assignments_total",
			Help: "Workload revisions written to device shadows, by kind: update (a batch), join, rollback, remove.",
		}, []string{"kind"}),
		states: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_deployments",
			Help: "Deployments by state, as of the last step.",
		}, []string{"state"}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.assigned); err != nil {
			return nil, fmt.Errorf("registering deploy metrics: %w", err)
		}
		if err := opts.Registerer.Register(s.states); err != nil {
			return nil, fmt.Errorf("registering deploy metrics: %w", err)
		}
	}
	if opts.Broker != nil {
		timeout := opts.LogsTimeout
		if timeout <= 0 {
			timeout = DefaultLogsTimeout
		}
		s.logs = &logRequests{broker: opts.Broker, timeout: timeout, pending: map[string]pendingLogs{}}
		if err := opts.Broker.Subscribe(protocol.LogsResponseFilter, opts.LogsSubscriptionID, s.logs.handle); err != nil {
			return nil, fmt.Errorf("subscribing to log answers: %w", err)
		}
	}
	return s, nil
}

// Apply parses and stores a spec and starts rolling it out. An invalid
// spec is a deployspec.Problems error listing every problem.
func (s *Service) Apply(ctx context.Context, specBytes []byte) (Deployment, ApplyResult, error) {
	sp, err := deployspec.Parse(specBytes)
	if err != nil {
		return Deployment{}, "", err
	}
	if err := s.checkArtifact(sp); err != nil {
		return Deployment{}, "", err
	}
	canonical, rev := json.RawMessage(sp.Canonical()), sp.Revision()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	d, err := s.store.get(ctx, sp.Name)
	var result ApplyResult
	switch {
	case errors.Is(err, ErrNotFound):
		d = Deployment{Name: sp.Name, Spec: canonical, Revision: rev, State: Rolling, Devices: map[string]Assignment{}, CreatedAt: now, UpdatedAt: now}
		if err := s.store.create(ctx, d); err != nil {
			return Deployment{}, "", err
		}
		result = Created
	case err != nil:
		return Deployment{}, "", err
	case d.Revision == rev && d.State != Failed:
		return d, Unchanged, nil
	default:
		if d.Revision != rev {
			if d.State == Complete {
				d.Previous = &Revision{Spec: d.Spec, Revision: d.Revision}
			}
			d.Spec, d.Revision = canonical, rev
		}
		// A failed deployment applied again (changed or not) restarts its
		// rollout from the first batch.
		d.State, d.Message, d.Batch, d.BatchDoneAt, d.Unavailable = Rolling, "", 0, time.Time{}, nil
		d.UpdatedAt = now
		if err := s.store.save(ctx, d); err != nil {
			return Deployment{}, "", err
		}
		result = Updated
	}
	s.log.Info("deployment applied", "deployment", d.Name, "result", result, "revision", rev, "artifact", sp.Artifact)
	all, err := s.devices.All(ctx)
	if err == nil {
		err = s.step(ctx, &d, all, now)
	}
	if err != nil {
		// The deployment is stored; Run retries the step.
		s.log.Error("starting the deployment's rollout; retrying", "deployment", d.Name, "err", err)
	}
	return d, result, nil
}

func (s *Service) checkArtifact(sp deployspec.Spec) error {
	name, version := sp.ArtifactName(), sp.ArtifactVersion()
	typ, err := s.artifacts.ArtifactType(name, version)
	if err != nil {
		return fmt.Errorf("%w: %s: %w; publish it with outpost artifacts publish --type service", ErrUnknownArtifact, sp.Artifact, err)
	}
	if typ != ota.TypeService {
		return fmt.Errorf("%w: %s is published as type %q", ErrArtifactType, sp.Artifact, typ)
	}
	return nil
}

// Get returns a deployment.
func (s *Service) Get(ctx context.Context, name string) (Deployment, error) {
	return s.store.get(ctx, name)
}

// Deployments returns every deployment, by name.
func (s *Service) Deployments(ctx context.Context) ([]Deployment, error) {
	ds, err := s.store.list(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ds, func(a, b Deployment) int { return strings.Compare(a.Name, b.Name) })
	return ds, nil
}

// Delete removes the service from every device it was given to and
// deletes the deployment. It returns how many devices it was removed from.
func (s *Service) Delete(ctx context.Context, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.store.get(ctx, name)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range sortedKeys(d.Devices) {
		if err := s.remove(ctx, d.Name, id); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.Devices, id)
		n++
	}
	if len(errs) > 0 {
		// Keep the devices not yet cleared, so that a second Delete
		// finishes the job.
		d.UpdatedAt = s.now().UTC()
		if err := s.store.save(ctx, d); err != nil {
			errs = append(errs, err)
		}
		return n, errors.Join(errs...)
	}
	if err := s.store.delete(ctx, name); err != nil {
		return n, err
	}
	s.log.Info("deployment deleted", "deployment", name, "devices", n)
	return n, nil
}

// Run advances the deployments every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, s.log, "advancing deployments", s.Step)
}

// Step advances every deployment once: it reads the device list once, and
// the workloads shadows of the current batches' devices only.
func (s *Service) Step(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds, err := s.store.list(ctx)
	if err != nil {
		return err
	}
	all, err := s.devices.All(ctx)
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	now := s.now().UTC()
	var errs []error
	counts := map[State]int{Rolling: 0, Complete: 0, Failed: 0}
	for i := range ds {
		if err := s.step(ctx, &ds[i], all, now); err != nil {
			errs = append(errs, fmt.Errorf("deployment %s: %w", ds[i].Name, err))
		}
		counts[ds[i].State]++
	}
	for st, n := range counts {
		s.states.WithLabelValues(string(st)).Set(float64(n))
	}
	return errors.Join(errs...)
}

// step advances d as far as it can now and saves it if it changed. all is
// every device, sorted by id or not.
func (s *Service) step(ctx context.Context, d *Deployment, all []Device, now time.Time) error {
	sp, err := d.ParsedSpec()
	if err != nil {
		return err
	}
	if d.Devices == nil {
		d.Devices = map[string]Assignment{}
	}
	var targets []string
	exists := make(map[string]bool, len(all))
	matching := map[string]bool{}
	for _, dev := range all {
		exists[dev.ID] = true
		if matches(dev.Labels, sp.Selector) {
			targets = append(targets, dev.ID)
			matching[dev.ID] = true
		}
	}
	slices.Sort(targets)

	changed := false
	var errs []error
	// Devices that left the selector lose the service; deleted devices
	// are only forgotten (their shadows went with them).
	for _, id := range sortedKeys(d.Devices) {
		if matching[id] {
			continue
		}
		if exists[id] {
			if err := s.remove(ctx, d.Name, id); err != nil {
				errs = append(errs, err)
				continue
			}
			s.log.Info("service removed from a device that no longer matches", "deployment", d.Name, "device", id)
		}
		delete(d.Devices, id)
		changed = true
	}

	// Devices that joined the selector.
	for _, id := range targets {
		if _, ok := d.Devices[id]; ok {
			continue
		}
		rev := d.Previous
		if d.State == Complete {
			rev = &Revision{Spec: d.Spec, Revision: d.Revision}
		}
		if rev == nil {
			continue // rolling or failed with nothing older: a batch takes it
		}
		if err := s.assign(ctx, d, id, *rev, 0, now, "join"); err != nil {
			errs = append(errs, err)
			continue
		}
		changed = true
	}

	if d.State == Rolling {
		c, err := s.advance(ctx, d, sp, targets, now)
		changed = changed || c
		if err != nil {
			errs = append(errs, err)
		}
	}
	if changed {
		d.UpdatedAt = now
		if err := s.store.save(ctx, *d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// advance moves a rolling deployment on: it checks the current batch and
// fails the deployment, waits, starts the next batch or completes.
func (s *Service) advance(ctx context.Context, d *Deployment, sp deployspec.Spec, targets []string, now time.Time) (changed bool, err error) {
	for d.State == Rolling {
		if d.Batch > 0 {
			done, unavailable, err := s.checkBatch(ctx, d, sp, now)
			if err != nil {
				return changed, err
			}
			if len(d.Unavailable)+len(unavailable) > sp.Strategy.MaxUnavailable {
				return true, s.fail(ctx, d, unavailable, sp.Strategy.MaxUnavailable, now)
			}
			if !done {
				return changed, nil
			}
			if d.BatchDoneAt.IsZero() {
				d.BatchDoneAt, changed = now, true
			}
			if now.Before(d.BatchDoneAt.Add(time.Duration(sp.Strategy.Pause))) {
				return changed, nil
			}
			for _, u := range unavailable {
				d.Unavailable = append(d.Unavailable, u.id)
			}
		}
		// The next batch: devices not on the current revision, in id order.
		var todo []string
		for _, id := range targets {
			if a, ok := d.Devices[id]; !ok || a.Revision != d.Revision {
				todo = append(todo, id)
			}
		}
		if len(todo) == 0 {
			d.State = Complete
			d.Previous = &Revision{Spec: d.Spec, Revision: d.Revision}
			d.Message = fmt.Sprintf("%d devices on revision %s", len(targets), d.Revision)
			if len(d.Unavailable) > 0 {
				d.Message += fmt.Sprintf("; %d did not report healthy in time: %s", len(d.Unavailable), strings.Join(d.Unavailable, ", "))
			}
			s.log.Info("deployment complete", "deployment", d.Name, "revision", d.Revision, "devices", len(targets))
			return true, nil
		}
		size := min(sp.Strategy.Batch.Size().Of(len(targets)), len(todo))
		d.Batch++
		d.BatchDoneAt = time.Time{}
		changed = true
		cur := Revision{Spec: d.Spec, Revision: d.Revision}
		var errs []error
		for _, id := range todo[:size] {
			if err := s.assign(ctx, d, id, cur, d.Batch, now, "update"); err != nil {
				errs = append(errs, err)
			}
		}
		s.log.Info("deployment batch started", "deployment", d.Name, "batch", d.Batch, "devices", size, "revision", d.Revision)
		if len(errs) > 0 {
			// Devices whose shadow could not be written stay off the
			// revision; the next batch retries them.
			return changed, errors.Join(errs...)
		}
		// A batch is never done the moment it starts: wait for reports.
		return changed, nil
	}
	return changed, nil
}

// unavailableDevice is a batch device that did not become healthy in time.
type unavailableDevice struct {
	id     string
	report *protocol.WorkloadReport
}

// checkBatch reads the workloads shadows of the current batch's devices.
// The batch is done when every device is done (the new revision running
// and healthy) or unavailable: not done health_timeout after it was
// assigned, or reporting the new revision in state error or failed.
func (s *Service) checkBatch(ctx context.Context, d *Deployment, sp deployspec.Spec, now time.Time) (done bool, unavailable []unavailableDevice, err error) {
	timeout := time.Duration(sp.Strategy.HealthTimeout)
	done = true
	for _, id := range sortedKeys(d.Devices) {
		a := d.Devices[id]
		if a.Batch != d.Batch || a.Revision != d.Revision {
			continue
		}
		reports, err := s.reports(ctx, id)
		if err != nil {
			return false, nil, err
		}
		r, ok := reports[d.Name]
		switch {
		case ok && r.Revision == d.Revision && r.Healthy && r.State == "running":
			continue
		case ok && r.Revision == d.Revision && (r.State == protocol.WorkloadError || r.State == "failed"),
			!now.Before(a.AssignedAt.Add(timeout)):
			u := unavailableDevice{id: id}
			if ok {
				u.report = &r
			}
			unavailable = append(unavailable, u)
		default:
			done = false
		}
	}
	return done, unavailable, nil
}

// fail stops the rollout and puts the current batch back on the previous
// revision, if there is one.
func (s *Service) fail(ctx context.Context, d *Deployment, unavailable []unavailableDevice, maxUnavailable int, now time.Time) error {
	parts := make([]string, len(unavailable))
	for i, u := range unavailable {
		parts[i] = u.id + " (" + describe(u.report, d.Revision) + ")"
	}
	d.State = Failed
	d.Message = fmt.Sprintf("batch %d: %d devices unavailable, at most %d allowed: %s", d.Batch, len(d.Unavailable)+len(unavailable),
		maxUnavailable, strings.Join(parts, "; "))
	if len(d.Unavailable) > 0 {
		d.Message += "; earlier batches: " + strings.Join(d.Unavailable, ", ")
	}
	var errs []error
	if d.Previous != nil {
		d.Message += "; batch rolled back to revision " + d.Previous.Revision
		for _, id := range sortedKeys(d.Devices) {
			a := d.Devices[id]
			if a.Batch != d.Batch || a.Revision != d.Revision {
				continue
			}
			if err := s.assign(ctx, d, id, *d.Previous, 0, now, "rollback"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.log.Warn("deployment failed", "deployment", d.Name, "message", d.Message)
	return errors.Join(errs...)
}

// describe says what a device last reported about a revision.
func describe(r *protocol.WorkloadReport, want string) string {
	if r == nil {
		return "no report"
	}
	var b strings.Builder
	b.WriteString(r.State)
	if r.Revision != want {
		fmt.Fprintf(&b, " on revision %s", r.Revision)
	}
	if r.State == "running" && !r.Healthy {
		b.WriteString(", unhealthy")
	}
	if r.Error != "" {
		b.WriteString(": " + r.Error)
	}
	if r.LastExit != nil && r.LastExit.Reason != "" {
		fmt.Fprintf(&b, ", last exit %s (code %d)", r.LastExit.Reason, r.LastExit.Code)
	}
	return b.String()
}

// assign writes rev to a device's workloads shadow and records it.
func (s *Service) assign(ctx context.Context, d *Deployment, id string, rev Revision, batch int, now time.Time, kind string) error {
	patch, err := json.Marshal(map[string]any{protocol.WorkloadsKey: map[string]any{
		d.Name: protocol.WorkloadDesired{Revision: rev.Revision, Spec: string(rev.Spec)},
	}})
	if err != nil {
		return err
	}
	if _, err := s.shadows.PatchDesired(ctx, id, protocol.WorkloadsShadow, patch, nil); err != nil {
		return fmt.Errorf("writing the workloads shadow of %s: %w", id, err)
	}
	d.Devices[id] = Assignment{Revision: rev.Revision, Batch: batch, AssignedAt: now}
	s.assigned.WithLabelValues(kind).Inc()
	return nil
}

// remove writes null for the service into a device's workloads shadow.
func (s *Service) remove(ctx context.Context, name, id string) error {
	patch, err := json.Marshal(map[string]any{protocol.WorkloadsKey: map[string]any{name: nil}})
	if err != nil {
		return err
	}
	if _, err := s.shadows.PatchDesired(ctx, id, protocol.WorkloadsShadow, patch, nil); err != nil {
		return fmt.Errorf("removing %s from the workloads shadow of %s: %w", name, id, err)
	}
	s.assigned.WithLabelValues("remove").Inc()
	return nil
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
