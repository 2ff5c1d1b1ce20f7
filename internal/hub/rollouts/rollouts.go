// Package rollouts runs staged OTA rollouts on the hub: an artifact goes to
// the devices a label selector matches, in cumulative waves (1%, 10%, 50%,
// 100% …), one job per wave. The next wave starts only when every device of
// the current one has ended its job, at least the success threshold of them
// succeeded, and the soak time has passed. A wave whose failures make the
// threshold unreachable pauses the rollout with the reason. State lives in
// the store, and Step derives everything else from it and from the jobs'
// executions, so a hub restart resumes a rollout where it was.
package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/periodic"
	"github.com/outpost-edge/outpost/internal/rollout"
)

// Status of a rollout.
type Status string

// Rollout statuses. Completed and Aborted are final.
const (
	Running   Status = "running"
	Paused    Status = "paused"
	Completed Status = "completed"
	Aborted   Status = "aborted"
)

// Execution statuses of jobs, as the AWS IoT Jobs layout names them.
const (
	ExecQueued     = "QUEUED"
	ExecInProgress = "IN_PROGRESS"
	ExecSucceeded  = "SUCCEEDED"
	ExecFailed     = "FAILED"
	ExecRejected   = "REJECTED"
	ExecTimedOut   = "TIMED_OUT"
	ExecCanceled   = "CANCELED"
)

// Artifact names what a rollout installs.
type Artifact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    string `json:"type"`
}

// Spec is what an operator asks for.
type Spec struct {
	ID       string            `json:"id"`
	Artifact Artifact          `json:"artifact"`
	Selector map[string]string `json:"selector,omitempty"`
	// Waves are cumulative shares of the matching devices: "1%", "10%",
	// "100%"; or counts: "5". The last wave takes every device left.
	Waves []string `json:"waves"`
	// SuccessThreshold is the share of a wave's devices that must succeed
	// (0 to 1).
	SuccessThreshold float64 `json:"success_threshold"`
	// Soak is how long a successful wave is watched before the next; 0
	// starts the next at once (the CLI and the REST API default to
	// DefaultSoak).
	Soak time.Duration `json:"soak_ns"`
	// QueuedTimeout ends a device's job as TIMED_OUT when it has not
	// started it in that time (an offline device); InProgressTimeout when
	// it started but did not finish.
	QueuedTimeout     time.Duration `json:"queued_timeout_ns"`
	InProgressTimeout time.Duration `json:"in_progress_timeout_ns"`
}

// Defaults of a Spec's optional fields.
const (
	DefaultSuccessThreshold  = 0.95
	DefaultSoak              = 5 * time.Minute
	DefaultQueuedTimeout     = 24 * time.Hour
	DefaultInProgressTimeout = 30 * time.Minute
	MaxWaves                 = 20
	// MaxWaveDevices is the most devices one wave (one job) may hold.
	MaxWaveDevices = 10000
)

// DefaultWaves is the wave plan when none is given.
var DefaultWaves = []string{"1%", "10%", "50%", "100%"}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$`)

func (s *Spec) setDefaults() {
	if len(s.Waves) == 0 {
		s.Waves = slices.Clone(DefaultWaves)
	}
	if s.SuccessThreshold == 0 {
		s.SuccessThreshold = DefaultSuccessThreshold
	}
	if s.QueuedTimeout == 0 {
		s.QueuedTimeout = DefaultQueuedTimeout
	}
	if s.InProgressTimeout == 0 {
		s.InProgressTimeout = DefaultInProgressTimeout
	}
}

// validate reports every problem of s at once; defaults are applied.
func (s Spec) validate() error {
	var errs []error
	if !idPattern.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("rollout id %q: want 1–48 of A-Z a-z 0-9 _ -, starting with a letter or digit", s.ID))
	}
	if s.Artifact.Name == "" || s.Artifact.Version == "" {
		errs = append(errs, errors.New("artifact: want NAME@VERSION"))
	}
	if len(s.Waves) > MaxWaves {
		errs = append(errs, fmt.Errorf("waves: at most %d, got %d", MaxWaves, len(s.Waves)))
	}
	for _, w := range s.Waves {
		if _, err := rollout.ParseBatchSize(w); err != nil {
			errs = append(errs, fmt.Errorf("waves: %w", err))
		}
	}
	if !(s.SuccessThreshold > 0 && s.SuccessThreshold <= 1) {
		errs = append(errs, fmt.Errorf("success threshold must be above 0%% and at most 100%%, got %g%%", s.SuccessThreshold*100))
	}
	if s.Soak < 0 || s.QueuedTimeout < time.Second || s.InProgressTimeout < time.Second {
		errs = append(errs, errors.New("soak must not be negative and the job timeouts must be at least 1s"))
	}
	return errors.Join(errs...)
}

// Rollout is a rollout's whole state, as stored.
type Rollout struct {
	Spec
	Status Status `json:"status"`
	// Reason says why the rollout paused, was aborted or completed.
	Reason string `json:"reason,omitempty"`
	// Devices are the matching devices in wave order; Bounds[k] is how
	// many of them waves 0..k cover.
	Devices []string `json:"devices"`
	Bounds  []int    `json:"bounds"`
	// Wave is the index of the current wave; started tells whether its
	// job exists.
	Wave        int       `json:"wave"`
	WaveStarted bool      `json:"wave_started"`
	SoakUntil   time.Time `json:"soak_until,omitzero"`
	// Accepted marks waves whose failures an operator accepted by
	// resuming.
	Accepted  map[int]bool `json:"accepted,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// JobID is the job of wave k.
func (r *Rollout) JobID(k int) string { return fmt.Sprintf("%s-w%d", r.ID, k+1) }

// WaveDevices returns the devices of wave k.
func (r *Rollout) WaveDevices(k int) []string {
	lo := 0
	if k > 0 {
		lo = r.Bounds[k-1]
	}
	return r.Devices[lo:r.Bounds[k]]
}

// Final reports whether the rollout can no longer change.
func (r *Rollout) Final() bool { return r.Status == Completed || r.Status == Aborted }

// JobSpec is a job for the devices of one wave.
type JobSpec struct {
	ID                string
	Document          json.RawMessage
	Devices           []string
	QueuedTimeout     time.Duration
	InProgressTimeout time.Duration
	Rollout           string
}

// Execution is one device's job as the jobs service tracks it.
type Execution struct {
	Device        string            `json:"device"`
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"status_details,omitempty"`
}

// Jobs is what a rollout needs of the jobs service.
type Jobs interface {
	// CreateJob creates the job; ErrJobExists if it exists already.
	CreateJob(ctx context.Context, spec JobSpec) error
	// CancelJob cancels the executions of the job that have not ended.
	CancelJob(ctx context.Context, jobID string) error
	// Executions returns every execution of the job.
	Executions(ctx context.Context, jobID string) ([]Execution, error)
}

// ErrJobExists is what Jobs.CreateJob returns for a job that exists.
var ErrJobExists = errors.New("job exists")

// Devices lists the devices a selector matches.
type Devices interface {
	MatchingIDs(ctx context.Context, selector map[string]string) ([]string, error)
}

// Artifacts tells whether an artifact is published, and its type.
type Artifacts interface {
	ArtifactType(name, version string) (string, error)
}

// Store keeps rollouts.
type Store interface {
	// CreateRollout stores a new rollout; ErrExists if the id is taken.
	CreateRollout(ctx context.Context, r Rollout) error
	// SaveRollout replaces a stored rollout.
	SaveRollout(ctx context.Context, r Rollout) error
	Rollout(ctx context.Context, id string) (Rollout, error)
	Rollouts(ctx context.Context) ([]Rollout, error)
	// RunningRollouts returns the rollouts with status Running: Step
	// reads these only, however many have ended.
	RunningRollouts(ctx context.Context) ([]Rollout, error)
}

// Errors of the service.
var (
	ErrExists      = errors.New("a rollout with this id exists")
	ErrNotFound    = errors.New("no such rollout")
	ErrNoDevices   = errors.New("no device matches the selector")
	ErrFinal       = errors.New("the rollout has ended")
	ErrState       = errors.New("the rollout is not in a state for this")
	ErrInvalid     = errors.New("invalid rollout")
	ErrNotArtifact = errors.New("artifact not published")
)

// Service runs rollouts. It is safe for concurrent use.
type Service struct {
	store     Store
	jobs      Jobs
	devices   Devices
	artifacts Artifacts
	log       *slog.Logger
	now       func() time.Time
	// mu serializes state changes: Step and the operator's commands.
	mu sync.Mutex
}

// NewService returns a Service.
func NewService(st Store, jobs Jobs, devices Devices, artifacts Artifacts, logger *slog.Logger) *Service {
	return &Service{store: st, jobs: jobs, devices: devices, artifacts: artifacts, log: logger.With("component", "rollouts"), now: time.Now}
}

// Create validates spec, fixes the device list and the waves, stores the
// rollout and starts its first wave.
func (s *Service) Create(ctx context.Context, spec Spec) (Rollout, error) {
	spec.setDefaults()
	if err := spec.validate(); err != nil {
		return Rollout{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	typ, err := s.artifacts.ArtifactType(spec.Artifact.Name, spec.Artifact.Version)
	if err != nil {
		return Rollout{}, fmt.Errorf("%w: %s@%s: %w", ErrNotArtifact, spec.Artifact.Name, spec.Artifact.Version, err)
	}
	spec.Artifact.Type = typ
	ids, err := s.devices.MatchingIDs(ctx, spec.Selector)
	if err != nil {
		return Rollout{}, err
	}
	if len(ids) == 0 {
		return Rollout{}, ErrNoDevices
	}
	now := s.now().UTC()
	r := Rollout{Spec: spec, Status: Running, Devices: waveOrder(spec.ID, ids), CreatedAt: now, UpdatedAt: now}
	r.Bounds = bounds(spec.Waves, len(ids))
	for k := range r.Bounds {
		if n := len(r.WaveDevices(k)); n > MaxWaveDevices {
			return Rollout{}, fmt.Errorf("%w: wave %d would have %d devices, at most %d: add waves", ErrInvalid, k+1, n, MaxWaveDevices)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.CreateRollout(ctx, r); err != nil {
		return Rollout{}, err
	}
	s.log.Info("rollout created", "rollout", r.ID, "artifact", spec.Artifact.Name+"@"+spec.Artifact.Version, "devices", len(ids), "waves", len(r.Bounds))
	if err := s.step(ctx, &r, now); err != nil {
		// The rollout is stored; Run retries the step.
		s.log.Error("starting the rollout's first wave; retrying", "rollout", r.ID, "err", err)
	}
	return r, nil
}

// waveOrder shuffles ids deterministically per rollout, so that the first
// wave is not always the same devices, nor all of one site named alike.
func waveOrder(rolloutID string, ids []string) []string {
	key := func(id string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(rolloutID))
		h.Write([]byte{0})
		h.Write([]byte(id))
		return h.Sum64()
	}
	out := slices.Clone(ids)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// bounds turns cumulative wave sizes into device counts: non-decreasing,
// each wave at least one device more than the last, the last wave all.
func bounds(waves []string, n int) []int {
	var out []int
	prev := 0
	for i, w := range waves {
		b, _ := rollout.ParseBatchSize(w)
		k := b.Of(n)
		if i == len(waves)-1 {
			k = n
		}
		if k <= prev {
			continue // an empty wave: skip it
		}
		out = append(out, k)
		prev = k
		if k == n {
			break
		}
	}
	if len(out) == 0 || out[len(out)-1] != n {
		out = append(out, n)
	}
	return out
}

// Get returns a rollout.
func (s *Service) Get(ctx context.Context, id string) (Rollout, error) {
	return s.store.Rollout(ctx, id)
}

// List returns every rollout, newest first.
func (s *Service) List(ctx context.Context) ([]Rollout, error) {
	rs, err := s.store.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rs, func(a, b Rollout) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return rs, nil
}

// Pause stops a running rollout from starting further waves; jobs already
// created go on.
func (s *Service) Pause(ctx context.Context, id, reason string) (Rollout, error) {
	return s.change(ctx, id, func(r *Rollout) error {
		if r.Status != Running {
			return fmt.Errorf("%w: rollout %s is %s, not running", ErrState, id, r.Status)
		}
		r.Status, r.Reason = Paused, "paused by operator"
		if reason != "" {
			r.Reason += ": " + reason
		}
		return nil
	})
}

// Resume continues a paused rollout. The current wave's failures count as
// accepted: the wave moves on once its devices have ended their jobs.
func (s *Service) Resume(ctx context.Context, id string) (Rollout, error) {
	return s.change(ctx, id, func(r *Rollout) error {
		if r.Status != Paused {
			return fmt.Errorf("%w: rollout %s is %s, not paused", ErrState, id, r.Status)
		}
		if r.Accepted == nil {
			r.Accepted = map[int]bool{}
		}
		r.Accepted[r.Wave] = true
		r.Status, r.Reason = Running, ""
		return nil
	})
}

// Abort ends a rollout: the current wave's jobs that have not ended are
// canceled and no further wave starts.
func (s *Service) Abort(ctx context.Context, id, reason string) (Rollout, error) {
	return s.change(ctx, id, func(r *Rollout) error {
		if r.WaveStarted {
			if err := s.jobs.CancelJob(ctx, r.JobID(r.Wave)); err != nil {
				return fmt.Errorf("canceling the jobs of wave %d: %w", r.Wave+1, err)
			}
		}
		r.Status, r.Reason = Aborted, "aborted by operator"
		if reason != "" {
			r.Reason += ": " + reason
		}
		return nil
	})
}

func (s *Service) change(ctx context.Context, id string, fn func(*Rollout) error) (Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.store.Rollout(ctx, id)
	if err != nil {
		return Rollout{}, err
	}
	if r.Final() {
		return r, fmt.Errorf("%w: rollout %s is %s", ErrFinal, id, r.Status)
	}
	if err := fn(&r); err != nil {
		return r, err
	}
	r.UpdatedAt = s.now().UTC()
	if err := s.store.SaveRollout(ctx, r); err != nil {
		return r, err
	}
	s.log.Info("rollout changed", "rollout", id, "status", r.Status, "reason", r.Reason)
	if r.Status == Running {
		err = s.step(ctx, &r, r.UpdatedAt)
	}
	return r, err
}

// Run advances the running rollouts every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, s.log, "advancing rollouts", s.Step)
}

// Step advances every running rollout once.
func (s *Service) Step(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, err := s.store.RunningRollouts(ctx)
	if err != nil {
		return err
	}
	var errs []error
	now := s.now().UTC()
	for i := range rs {
		if err := s.step(ctx, &rs[i], now); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", rs[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

// WaveCounts tallies a wave's executions.
type WaveCounts struct {
	Devices   int `json:"devices"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"` // FAILED, REJECTED, TIMED_OUT
	Canceled  int `json:"canceled"`
	Pending   int `json:"pending"` // QUEUED or IN_PROGRESS
	// Removed devices were deleted from the hub: no job, not counted.
	Removed  int            `json:"removed"`
	ByStatus map[string]int `json:"by_status"`
}

func tally(devices []string, execs []Execution) WaveCounts {
	c := WaveCounts{Devices: len(devices), ByStatus: map[string]int{}}
	seen := map[string]bool{}
	for _, e := range execs {
		seen[e.Device] = true
		c.ByStatus[e.Status]++
		switch e.Status {
		case ExecSucceeded:
			c.Succeeded++
		case ExecFailed, ExecRejected, ExecTimedOut:
			c.Failed++
		case ExecCanceled:
			c.Canceled++
		default:
			c.Pending++
		}
	}
	for _, d := range devices {
		if !seen[d] {
			c.Removed++
		}
	}
	return c
}

// step advances r as far as it can now, saving each change.
func (s *Service) step(ctx context.Context, r *Rollout, now time.Time) error {
	for r.Status == Running {
		if !r.WaveStarted {
			if err := s.startWave(ctx, r); err != nil {
				return err
			}
		}
		execs, err := s.jobs.Executions(ctx, r.JobID(r.Wave))
		if err != nil {
			return err
		}
		c := tally(r.WaveDevices(r.Wave), execs)
		mustSucceed := int(math.Ceil(r.SuccessThreshold*float64(c.Devices-c.Removed) - 1e-9))
		switch {
		case !r.Accepted[r.Wave] && c.Devices-c.Failed-c.Canceled-c.Removed < mustSucceed && c.Devices > c.Removed:
			r.Status = Paused
			r.Reason = fmt.Sprintf("wave %d: %d of %d devices failed (%s); %d must succeed for the %s success threshold",
				r.Wave+1, c.Failed, c.Devices, failedDetail(c), mustSucceed, percent(r.SuccessThreshold))
			// The wave's jobs stay as they are: devices already updating
			// finish, the others keep their queued job until the operator
			// resumes or aborts.
			s.log.Warn("rollout paused", "rollout", r.ID, "reason", r.Reason)
			return s.save(ctx, r, now)
		case c.Pending > 0:
			return nil // the wave is still running
		case r.SoakUntil.IsZero():
			r.SoakUntil = now.Add(r.Soak)
			if err := s.save(ctx, r, now); err != nil {
				return err
			}
			if r.Soak > 0 {
				return nil
			}
		case now.Before(r.SoakUntil):
			return nil
		case r.Wave == len(r.Bounds)-1:
			r.Status = Completed
			r.Reason = fmt.Sprintf("all %d waves done: %d devices", len(r.Bounds), len(r.Devices))
			s.log.Info("rollout completed", "rollout", r.ID)
			return s.save(ctx, r, now)
		default:
			r.Wave++
			r.WaveStarted, r.SoakUntil = false, time.Time{}
			if err := s.save(ctx, r, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func failedDetail(c WaveCounts) string {
	var parts []string
	for _, st := range []string{ExecFailed, ExecRejected, ExecTimedOut} {
		if n := c.ByStatus[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func percent(f float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", f*100), "0"), ".0") + "%"
}

func (s *Service) startWave(ctx context.Context, r *Rollout) error {
	// Devices deleted since the rollout was created get no job; the wave
	// counts them as removed.
	all, err := s.devices.MatchingIDs(ctx, nil)
	if err != nil {
		return err
	}
	exists := make(map[string]bool, len(all))
	for _, id := range all {
		exists[id] = true
	}
	var targets []string
	for _, d := range r.WaveDevices(r.Wave) {
		if exists[d] {
			targets = append(targets, d)
		}
	}
	if len(targets) == 0 {
		r.WaveStarted = true
		s.log.Warn("rollout wave has no devices left", "rollout", r.ID, "wave", r.Wave+1)
		return s.save(ctx, r, s.now().UTC())
	}
	doc, err := json.Marshal(map[string]any{
		"type":     r.Artifact.Type,
		"artifact": map[string]string{"name": r.Artifact.Name, "version": r.Artifact.Version},
		"rollout":  r.ID,
	})
	if err != nil {
		return err
	}
	err = s.jobs.CreateJob(ctx, JobSpec{
		ID: r.JobID(r.Wave), Document: doc, Devices: targets,
		QueuedTimeout: r.QueuedTimeout, InProgressTimeout: r.InProgressTimeout, Rollout: r.ID,
	})
	if err != nil && !errors.Is(err, ErrJobExists) {
		return fmt.Errorf("creating the job of wave %d: %w", r.Wave+1, err)
	}
	r.WaveStarted = true
	s.log.Info("rollout wave started", "rollout", r.ID, "wave", r.Wave+1, "devices", len(r.WaveDevices(r.Wave)))
	return s.save(ctx, r, s.now().UTC())
}

func (s *Service) save(ctx context.Context, r *Rollout, now time.Time) error {
	r.UpdatedAt = now
	return s.store.SaveRollout(ctx, *r)
}

// WaveState is one wave of a rollout with its executions, for show.
type WaveState struct {
	Wave       int         `json:"wave"`
	JobID      string      `json:"job_id"`
	Started    bool        `json:"started"`
	Counts     WaveCounts  `json:"counts"`
	Executions []Execution `json:"executions,omitempty"`
}

// Waves returns the state of every wave of r.
func (s *Service) Waves(ctx context.Context, r Rollout) ([]WaveState, error) {
	out := make([]WaveState, len(r.Bounds))
	for k := range r.Bounds {
		ws := WaveState{Wave: k + 1, JobID: r.JobID(k), Started: k < r.Wave || (k == r.Wave && r.WaveStarted)}
		var execs []Execution
		if ws.Started {
			var err error
			if execs, err = s.jobs.Executions(ctx, ws.JobID); err != nil {
				return nil, err
			}
		}
		slices.SortFunc(execs, func(a, b Execution) int { return strings.Compare(a.Device, b.Device) })
		ws.Counts = tally(r.WaveDevices(k), execs)
		ws.Executions = execs
		out[k] = ws
	}
	return out, nil
}
