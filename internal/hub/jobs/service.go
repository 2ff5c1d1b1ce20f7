package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/periodic"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the jobs service needs from storage.
type Store interface {
	// CreateJob stores a job and its executions atomically:
	// store.ErrExists if the id is taken, an error matching
	// store.ErrNotFound if a device does not exist.
	CreateJob(ctx context.Context, job store.Job, execs []store.JobExecution) error
	// Job returns one job, or store.ErrNotFound.
	Job(ctx context.Context, id string) (store.Job, error)
	// Jobs returns every job, oldest first.
	Jobs(ctx context.Context) ([]store.Job, error)
	// JobExecutions returns a job's executions, sorted by device id.
	JobExecutions(ctx context.Context, jobID string) ([]store.JobExecution, error)
	// JobExecution returns one execution, or store.ErrNotFound.
	JobExecution(ctx context.Context, jobID, deviceID string) (store.JobExecution, error)
	// PendingJobExecutions returns a device's QUEUED and IN_PROGRESS
	// executions by queuedAt, then creation order.
	PendingJobExecutions(ctx context.Context, deviceID string) ([]store.JobExecution, error)
	// OverdueJobExecutions returns the executions past their job's queued
	// or in-progress timeout at now.
	OverdueJobExecutions(ctx context.Context, now time.Time) ([]store.JobExecution, error)
	// UpdateJobExecution runs fn on the stored execution and stores what
	// it returns (with a higher version) atomically: nothing else is
	// written to the execution between fn's read and the write. An error
	// from fn aborts and is returned as is; store.ErrNotFound if there is
	// no such execution; store.ErrVersionConflict if another writer got in
	// between after all.
	UpdateJobExecution(ctx context.Context, jobID, deviceID string, fn func(cur store.JobExecution) (store.JobExecution, error)) (store.JobExecution, error)
}

// Publisher sends a message to MQTT subscribers (the embedded broker's
// inline client, or a client of an external broker). Publish must not call
// back into the Service synchronously except through HandleMQTT.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Options tune a Service; the zero value is usable.
type Options struct {
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// SweepInterval is how often Run looks for timed-out executions;
	// zero is DefaultSweepInterval.
	SweepInterval time.Duration
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultSweepInterval is how often Run expires overdue executions by
// default.
const DefaultSweepInterval = 5 * time.Second

// MaxDevicesPerJob is the most devices one job may target.
const MaxDevicesPerJob = 10000

// MaxRolloutLen is the longest rollout tag of a job, in bytes.
const MaxRolloutLen = 128

// maxAttempts bounds the tries of a write without an expected version
// that lost to another writer.
const maxAttempts = 3

// Spec describes a job to create.
type Spec struct {
	// ID is 1 to 64 ASCII letters, digits, '-' and '_'.
	ID string
	// Document is the job document sent to devices: a JSON object of at
	// most protocol.MaxJobDocumentBytes, whose "type" field selects the
	// agent's handler.
	Document json.RawMessage
	// Devices are the target device ids (at least one, no duplicates).
	Devices []string
	// InProgressTimeout bounds how long an execution may stay IN_PROGRESS;
	// QueuedTimeout how long it may stay QUEUED (the device is offline or
	// busy). Zero: no limit.
	InProgressTimeout time.Duration
	QueuedTimeout     time.Duration
	// Rollout optionally tags the job with the rollout that created it.
	Rollout string
}

// Job is a created job.
type Job struct {
	ID                string
	Document          json.RawMessage
	InProgressTimeout time.Duration
	QueuedTimeout     time.Duration
	Rollout           string
	CreatedAt         time.Time
}

// Execution is one job's execution on one device.
type Execution struct {
	JobID           string
	DeviceID        string
	Status          protocol.JobStatus
	StatusDetails   map[string]string
	QueuedAt        time.Time
	StartedAt       time.Time // zero until it first went IN_PROGRESS
	LastUpdatedAt   time.Time
	Version         int64
	ExecutionNumber int64
}

// Service creates and cancels jobs and answers devices' jobs requests. It
// is safe for concurrent use: the requests and changes of one device are
// serialized by a lock (so its notify-next messages leave in order) and
// every change is a read-modify-write in one store transaction with a
// version check, so concurrent updates (other hub processes included)
// never lose one.
type Service struct {
	store    Store
	pub      Publisher
	logger   *slog.Logger
	now      func() time.Time
	interval time.Duration
	seed     maphash.Seed
	started  atomic.Bool
	// locks serialize the changes to each device's executions; a device
	// maps to one of them by hash.
	locks [64]sync.Mutex

	hooksMu sync.RWMutex // guards hooks
	hooks   []func(Execution)

	changes  *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewService returns a Service over st that talks to devices through pub
// (nil: publishes nothing).
func NewService(st Store, pub Publisher, logger *slog.Logger, opts Options) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store: st, pub: pub, logger: logger.With("component", "jobs"), now: opts.Now,
		interval: opts.SweepInterval, seed: maphash.MakeSeed(),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_job_executions_total", Help: "Job execution changes, by new status.",
		}, []string{"status"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_jobs_rejected_total", Help: "Refused jobs requests from devices, by operation and code.",
		}, []string{"op", "code"}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultSweepInterval
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.changes, s.rejected)
	}
	return s
}

// OnChange registers fn to be called after every stored change of an
// execution (creation included), in the order of each device's changes.
// fn is called without any lock held and may call the Service; it should
// not block for long.
func (s *Service) OnChange(fn func(Execution)) {
	s.hooksMu.Lock()
	s.hooks = append(s.hooks, fn)
	s.hooksMu.Unlock()
}

func (s *Service) fire(execs ...store.JobExecution) {
	s.hooksMu.RLock()
	hooks := slices.Clone(s.hooks)
	s.hooksMu.RUnlock()
	for _, e := range execs {
		s.changes.WithLabelValues(e.Status).Inc()
		for _, h := range hooks {
			h(execution(e))
		}
	}
}

func (s *Service) lock(deviceID string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, deviceID)%uint64(len(s.locks))]
}

func execution(e store.JobExecution) Execution {
	return Execution{
		JobID: e.JobID, DeviceID: e.DeviceID, Status: protocol.JobStatus(e.Status), StatusDetails: maps.Clone(e.StatusDetails),
		QueuedAt: e.QueuedAt, StartedAt: e.StartedAt, LastUpdatedAt: e.LastUpdatedAt,
		Version: e.Version, ExecutionNumber: e.ExecutionNumber,
	}
}

func job(j store.Job) Job {
	return Job{
		ID: j.ID, Document: json.RawMessage(j.Document), InProgressTimeout: j.InProgressTimeout,
		QueuedTimeout: j.QueuedTimeout, Rollout: j.Rollout, CreatedAt: j.CreatedAt,
	}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// wire is the protocol form of an execution; doc nil leaves the job
// document out.
func wire(e store.JobExecution, doc []byte) *protocol.JobExecution {
	return &protocol.JobExecution{
		JobID: e.JobID, ThingName: e.DeviceID, JobDocument: json.RawMessage(doc),
		Status: protocol.JobStatus(e.Status), StatusDetails: e.StatusDetails,
		QueuedAt: e.QueuedAt.Unix(), StartedAt: unixOrZero(e.StartedAt), LastUpdatedAt: e.LastUpdatedAt.Unix(),
		VersionNumber: e.Version, ExecutionNumber: e.ExecutionNumber,
	}
}

func state(e store.JobExecution) *protocol.JobExecutionState {
	return &protocol.JobExecutionState{Status: protocol.JobStatus(e.Status), StatusDetails: e.StatusDetails, VersionNumber: e.Version}
}

// Create validates spec, stores the job with a QUEUED execution per
// device, and sends notify-next to each device for which it is now the
// next pending execution.
func (s *Service) Create(ctx context.Context, spec Spec) (Job, error) {
	if err := validSpec(spec); err != nil {
		return Job{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	j := store.Job{
		ID: spec.ID, Document: spec.Document, InProgressTimeout: spec.InProgressTimeout,
		QueuedTimeout: spec.QueuedTimeout, Rollout: spec.Rollout, CreatedAt: now,
	}
	execs := make([]store.JobExecution, len(spec.Devices))
	for i, d := range spec.Devices {
		execs[i] = store.JobExecution{
			JobID: spec.ID, DeviceID: d, Status: string(protocol.JobQueued),
			QueuedAt: now, LastUpdatedAt: now, Version: 1, ExecutionNumber: 1,
		}
	}
	err := s.store.CreateJob(ctx, j, execs)
	switch {
	case errors.Is(err, store.ErrExists):
		r := reject(protocol.JobsInvalidRequest, "Job %s already exists (or a device is listed twice)", spec.ID)
		r.exists = true
		return Job{}, r
	case errors.Is(err, store.ErrNotFound):
		return Job{}, reject(protocol.JobsInvalidRequest, "Unknown target device: %v", err)
	case err != nil:
		return Job{}, fmt.Errorf("creating job %s: %w", spec.ID, err)
	}
	s.logger.Info("job created", "job", spec.ID, "devices", len(spec.Devices), "rollout", spec.Rollout)
	for _, e := range execs {
		mu := s.lock(e.DeviceID)
		mu.Lock()
		next, err := s.nextPending(ctx, e.DeviceID)
		if err != nil {
			s.logger.Error("reading the next job execution", "device", e.DeviceID, "err", err)
		} else if next != nil && next.JobID == spec.ID {
			s.notifyNext(ctx, e.DeviceID, next)
		}
		mu.Unlock()
	}
	s.fire(execs...)
	return job(j), nil
}

func validSpec(spec Spec) error {
	var errs []error
	if err := protocol.ValidJobID(spec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := protocol.ValidJobDocument(spec.Document); err != nil {
		errs = append(errs, err)
	}
	if len(spec.Devices) == 0 || len(spec.Devices) > MaxDevicesPerJob {
		errs = append(errs, fmt.Errorf("a job needs 1 to %d devices, got %d", MaxDevicesPerJob, len(spec.Devices)))
	}
	seen := make(map[string]bool, len(spec.Devices))
	for _, d := range spec.Devices {
		if err := protocol.ValidDeviceID(d); err != nil {
			errs = append(errs, err)
		} else if seen[d] {
			errs = append(errs, fmt.Errorf("device %s listed twice", d))
		}
		seen[d] = true
	}
	if spec.InProgressTimeout < 0 || spec.QueuedTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if len(spec.Rollout) > MaxRolloutLen {
		errs = append(errs, fmt.Errorf("rollout tag is longer than %d bytes", MaxRolloutLen))
	}
	if err := errors.Join(errs...); err != nil {
		return reject(protocol.JobsInvalidRequest, "%s", err.Error())
	}
	return nil
}

// Job returns a job; a *Rejection matching ErrNotFound if there is none.
func (s *Service) Job(ctx context.Context, id string) (Job, error) {
	j, err := s.store.Job(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Job{}, reject(protocol.JobsResourceNotFound, "Job %s not found", id)
	}
	if err != nil {
		return Job{}, fmt.Errorf("reading job %s: %w", id, err)
	}
	return job(j), nil
}

// Jobs returns every job, oldest first.
func (s *Service) Jobs(ctx context.Context) ([]Job, error) {
	js, err := s.store.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing jobs: %w", err)
	}
	out := make([]Job, len(js))
	for i, j := range js {
		out[i] = job(j)
	}
	return out, nil
}

// Executions returns a job's executions, sorted by device id; a
// *Rejection matching ErrNotFound if the job does not exist.
func (s *Service) Executions(ctx context.Context, jobID string) ([]Execution, error) {
	if _, err := s.Job(ctx, jobID); err != nil {
		return nil, err
	}
	es, err := s.store.JobExecutions(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("listing executions of job %s: %w", jobID, err)
	}
	out := make([]Execution, len(es))
	for i, e := range es {
		out[i] = execution(e)
	}
	return out, nil
}

// Execution returns one execution; a *Rejection matching ErrNotFound if
// there is none.
func (s *Service) Execution(ctx context.Context, jobID, deviceID string) (Execution, error) {
	e, err := s.store.JobExecution(ctx, jobID, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return Execution{}, notFound(jobID, deviceID)
	}
	if err != nil {
		return Execution{}, fmt.Errorf("reading job execution %s/%s: %w", jobID, deviceID, err)
	}
	return execution(e), nil
}

func notFound(jobID, deviceID string) *Rejection {
	return reject(protocol.JobsResourceNotFound, "Job execution %s for thing %s not found", jobID, deviceID)
}

// nextPending returns the device's next pending execution, nil if none.
func (s *Service) nextPending(ctx context.Context, deviceID string) (*store.JobExecution, error) {
	p, err := s.store.PendingJobExecutions(ctx, deviceID)
	if err != nil || len(p) == 0 {
		return nil, err
	}
	return &p[0], nil
}

// notifyNext publishes notify-next with next (nil: nothing pending). The
// device's lock is held.
func (s *Service) notifyNext(ctx context.Context, deviceID string, next *store.JobExecution) {
	msg := protocol.JobsNotifyNext{Timestamp: s.now().Unix()}
	if next != nil {
		j, err := s.store.Job(ctx, next.JobID)
		if err != nil {
			s.logger.Error("reading job for notify-next", "job", next.JobID, "device", deviceID, "err", err)
			return
		}
		msg.Execution = wire(*next, j.Document)
	}
	s.publish(protocol.JobsNotifyNextTopic(deviceID), msg)
}

func (s *Service) publish(topic string, v any) {
	if s.pub == nil {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = s.pub.Publish(topic, b, false, 1)
	}
	if err != nil {
		s.logger.Error("publishing jobs message", "topic", topic, "err", err)
	}
}

// change applies fn to one execution under the device's lock and, if it
// changed which execution is next, publishes notify-next. fn returning
// errUnchanged leaves the execution alone without error (ok false).
func (s *Service) change(ctx context.Context, jobID, deviceID string, retry bool, fn func(cur store.JobExecution) (store.JobExecution, error)) (e store.JobExecution, ok bool, err error) {
	mu := s.lock(deviceID)
	mu.Lock()
	e, ok, err = s.changeLocked(ctx, jobID, deviceID, retry, fn)
	mu.Unlock()
	if ok {
		s.fire(e)
	}
	return e, ok, err
}

// changeLocked is change with the device's lock held; the caller fires
// the OnChange hooks after unlocking.
func (s *Service) changeLocked(ctx context.Context, jobID, deviceID string, retry bool, fn func(cur store.JobExecution) (store.JobExecution, error)) (store.JobExecution, bool, error) {
	before, err := s.nextPending(ctx, deviceID)
	if err != nil {
		return store.JobExecution{}, false, fmt.Errorf("reading the next job execution of %s: %w", deviceID, err)
	}
	e, err := s.store.UpdateJobExecution(ctx, jobID, deviceID, fn)
	for attempt := 1; retry && errors.Is(err, store.ErrVersionConflict) && attempt < maxAttempts; attempt++ {
		e, err = s.store.UpdateJobExecution(ctx, jobID, deviceID, fn)
	}
	var r *Rejection
	switch {
	case errors.Is(err, errUnchanged):
		return store.JobExecution{}, false, nil
	case errors.As(err, &r):
		return store.JobExecution{}, false, r
	case errors.Is(err, store.ErrNotFound):
		return store.JobExecution{}, false, notFound(jobID, deviceID)
	case errors.Is(err, store.ErrVersionConflict):
		cur, _ := s.store.JobExecution(ctx, jobID, deviceID)
		return store.JobExecution{}, false, &Rejection{Code: protocol.JobsVersionMismatch, Message: "Version mismatch", State: state(cur)}
	case err != nil:
		return store.JobExecution{}, false, fmt.Errorf("updating job execution %s/%s: %w", jobID, deviceID, err)
	}
	after, err := s.nextPending(ctx, deviceID)
	if err != nil {
		s.logger.Error("reading the next job execution", "device", deviceID, "err", err)
		return e, true, nil
	}
	if before == nil || after == nil || before.JobID != after.JobID {
		if before != nil || after != nil {
			s.notifyNext(ctx, deviceID, after)
		}
	}
	return e, true, nil
}

// withDetail returns details with key set to value, dropping the other
// keys if there would be too many.
func withDetail(details map[string]string, key, value string) map[string]string {
	out := maps.Clone(details)
	if out == nil {
		out = map[string]string{}
	}
	out[key] = value
	if len(out) > protocol.MaxJobStatusDetails {
		out = map[string]string{key: value}
	}
	return out
}

// Cancel cancels the job's executions on devices (none given: on all its
// devices) that are not final yet, and sends notify-next to the devices
// whose next execution changed; a device running it learns from that
// message that it was canceled. A *Rejection matching ErrNotFound if the
// job does not exist or a given device is not one of its targets.
func (s *Service) Cancel(ctx context.Context, jobID string, devices ...string) error {
	if _, err := s.Job(ctx, jobID); err != nil {
		return err
	}
	if len(devices) == 0 {
		es, err := s.store.JobExecutions(ctx, jobID)
		if err != nil {
			return fmt.Errorf("listing executions of job %s: %w", jobID, err)
		}
		for _, e := range es {
			devices = append(devices, e.DeviceID)
		}
	}
	var errs []error
	n := 0
	for _, d := range devices {
		_, ok, err := s.change(ctx, jobID, d, true, func(cur store.JobExecution) (store.JobExecution, error) {
			if !protocol.HubMayTransition(protocol.JobStatus(cur.Status), protocol.JobCanceled) {
				return cur, errUnchanged
			}
			next := cur
			next.Status = string(protocol.JobCanceled)
			next.StatusDetails = withDetail(cur.StatusDetails, "reason", "canceled")
			next.LastUpdatedAt = s.now().UTC().Truncate(time.Millisecond)
			next.Version++
			return next, nil
		})
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			n++
		}
	}
	s.logger.Info("job canceled", "job", jobID, "executions", n)
	return errors.Join(errs...)
}

// ExpireTimeouts turns the executions that are overdue at now into
// TIMED_OUT: IN_PROGRESS longer than their job's in-progress timeout, or
// QUEUED longer than its queued timeout. It returns how many it expired.
func (s *Service) ExpireTimeouts(ctx context.Context, now time.Time) (int, error) {
	over, err := s.store.OverdueJobExecutions(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("listing overdue job executions: %w", err)
	}
	jobs := map[string]store.Job{}
	n := 0
	var errs []error
	for _, o := range over {
		j, ok := jobs[o.JobID]
		if !ok {
			if j, err = s.store.Job(ctx, o.JobID); err != nil {
				errs = append(errs, fmt.Errorf("reading job %s: %w", o.JobID, err))
				continue
			}
			jobs[o.JobID] = j
		}
		_, changed, err := s.change(ctx, o.JobID, o.DeviceID, true, func(cur store.JobExecution) (store.JobExecution, error) {
			var reason string
			switch st := protocol.JobStatus(cur.Status); {
			case st == protocol.JobQueued && j.QueuedTimeout > 0 && !cur.QueuedAt.Add(j.QueuedTimeout).After(now):
				reason = fmt.Sprintf("timed out in QUEUED after %s", j.QueuedTimeout)
			case st == protocol.JobInProgress && j.InProgressTimeout > 0 && !cur.StartedAt.Add(j.InProgressTimeout).After(now):
				reason = fmt.Sprintf("timed out in IN_PROGRESS after %s", j.InProgressTimeout)
			default:
				return cur, errUnchanged // it moved on meanwhile
			}
			next := cur
			next.Status = string(protocol.JobTimedOut)
			next.StatusDetails = withDetail(cur.StatusDetails, "reason", reason)
			next.LastUpdatedAt = now.UTC().Truncate(time.Millisecond)
			next.Version++
			return next, nil
		})
		if err != nil {
			errs = append(errs, err)
		}
		if changed {
			n++
			s.logger.Info("job execution timed out", "job", o.JobID, "device", o.DeviceID, "was", o.Status)
		}
	}
	return n, errors.Join(errs...)
}

// Run expires overdue executions at once and every SweepInterval until ctx is done,
// then returns nil. It may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	periodic.Run(ctx, s.interval, s.logger, "expiring job timeouts", func(ctx context.Context) error {
		_, err := s.ExpireTimeouts(ctx, s.now())
		return err
	})
	return nil
}
