package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// API is the hub as a rollout uses it. Implementations are called from one
// goroutine at a time.
type API interface {
	// Devices returns the ids of the devices that carry every label of
	// selector.
	Devices(ctx context.Context, selector map[string]string) ([]string, error)
	// PatchDesired merges fragment into the desired state of the device's
	// shadow and returns the reported state after the change.
	PatchDesired(ctx context.Context, device string, fragment map[string]any) (reported map[string]any, err error)
	// Reported returns the reported state of the device's shadow.
	Reported(ctx context.Context, device string) (map[string]any, error)
}

// Clock is the time source of a rollout; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults of Rollout.
const (
	DefaultTimeout      = 2 * time.Minute
	DefaultPollInterval = 500 * time.Millisecond
)

// Rollout applies Desired to the devices matching Selector, batch after
// batch. Set the fields, then call Run once.
type Rollout struct {
	API      API
	Selector map[string]string
	// Desired is the fragment merged into each device's desired state (a
	// JSON merge patch: null deletes a key). A device has converged when its
	// reported state holds every non-null value of Desired.
	Desired map[string]any
	Batch   BatchSize
	// Pause is the wait between a converged batch and the next one.
	Pause time.Duration
	// Timeout bounds how long a batch may take to converge after its
	// devices were patched; DefaultTimeout if zero.
	Timeout time.Duration
	// PollInterval is how often the shadows of a batch are read;
	// DefaultPollInterval if zero.
	PollInterval time.Duration
	// Clock is the real clock if nil.
	Clock Clock
	// OnStart, if set, is called once with the batches before the first
	// one starts; OnBatch after each batch, converged or not. Both are
	// called from Run's goroutine.
	OnStart func(batches [][]string)
	OnBatch func(BatchResult)
}

// Status of a rollout in Result.
const (
	StatusConverged = "converged"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
)

// Result summarizes a rollout; Run returns it, also when it fails.
type Result struct {
	Status    string            `json:"status"`
	Selector  map[string]string `json:"selector"`
	Desired   map[string]any    `json:"desired"`
	BatchSize int               `json:"batch_size"`
	Devices   int               `json:"devices"`
	Batches   []BatchResult     `json:"batches"`
	Converged []string          `json:"converged"`
	Failed    []DeviceFailure   `json:"failed"`
	// NotStarted are the devices whose desired state was left unchanged.
	NotStarted []string `json:"not_started"`
	ElapsedMS  int64    `json:"elapsed_ms"`
	Error      string   `json:"error,omitempty"`
}

// BatchResult is the outcome of one batch.
type BatchResult struct {
	Index     int             `json:"batch"` // 1-based
	Of        int             `json:"of"`
	Devices   []string        `json:"devices"`
	Converged []string        `json:"converged"`
	Failed    []DeviceFailure `json:"failed"`
	Elapsed   time.Duration   `json:"-"`
	ElapsedMS int64           `json:"elapsed_ms"`
}

// DeviceFailure names a device that did not converge and why.
type DeviceFailure struct {
	Device string `json:"device"`
	Reason string `json:"reason"`
}

// Run performs the rollout. It returns the summary and, if the rollout did
// not converge everywhere, an error: ErrNoDevices, a *NotConvergedError, a
// failure to list devices, or the context's error when ctx ends first.
func (r *Rollout) Run(ctx context.Context) (Result, error) {
	clock := r.Clock
	if clock == nil {
		clock = realClock{}
	}
	timeout, poll := r.Timeout, r.PollInterval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	start := clock.Now()
	res := Result{Status: StatusFailed, Selector: r.Selector, Desired: r.Desired,
		Batches: []BatchResult{}, Converged: []string{}, Failed: []DeviceFailure{}, NotStarted: []string{}}
	finish := func(err error) (Result, error) {
		res.ElapsedMS = clock.Now().Sub(start).Milliseconds()
		switch {
		case err == nil:
			res.Status = StatusConverged
		case ctx.Err() != nil:
			res.Status = StatusCanceled
		}
		if err != nil {
			res.Error = err.Error()
		}
		return res, err
	}

	want := leaves(nil, r.Desired, nil)
	ids, err := r.API.Devices(ctx, r.Selector)
	if err != nil {
		return finish(fmt.Errorf("listing devices: %w", err))
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return finish(ErrNoDevices)
	}
	res.Devices = len(ids)
	res.BatchSize = r.Batch.Of(len(ids))
	batches := split(ids, res.BatchSize)
	if r.OnStart != nil {
		r.OnStart(batches)
	}
	for i, batch := range batches {
		if i > 0 && r.Pause > 0 {
			select {
			case <-ctx.Done():
				res.NotStarted = append(res.NotStarted, ids[i*res.BatchSize:]...)
				return finish(fmt.Errorf("pausing before batch %d: %w", i+1, ctx.Err()))
			case <-clock.After(r.Pause):
			}
		}
		br := r.runBatch(ctx, clock, batch, want, timeout, poll)
		br.Index, br.Of = i+1, len(batches)
		res.Batches = append(res.Batches, br)
		res.Converged = append(res.Converged, br.Converged...)
		res.Failed = append(res.Failed, br.Failed...)
		if r.OnBatch != nil {
			r.OnBatch(br)
		}
		if len(br.Failed) > 0 || ctx.Err() != nil {
			rest := ids[min((i+1)*res.BatchSize, len(ids)):]
			res.NotStarted = append(res.NotStarted, rest...)
			if err := ctx.Err(); err != nil {
				return finish(fmt.Errorf("waiting for batch %d: %w", i+1, err))
			}
			return finish(&NotConvergedError{Batch: i + 1, Batches: len(batches), Timeout: timeout.String(),
				Failed: br.Failed, NotStarted: len(rest)})
		}
	}
	return finish(nil)
}

// runBatch patches every device of batch and waits until they have all
// converged, timeout has passed or ctx ends.
func (r *Rollout) runBatch(ctx context.Context, clock Clock, batch []string, want []leaf, timeout, poll time.Duration) BatchResult {
	start := clock.Now()
	br := BatchResult{Devices: batch, Converged: []string{}, Failed: []DeviceFailure{}}
	// why holds the reason each device has not converged yet.
	why := make(map[string]string, len(batch))
	var patchFailed []DeviceFailure
	for _, id := range batch {
		reported, err := r.API.PatchDesired(ctx, id, r.Desired)
		if err != nil {
			if ctx.Err() != nil {
				patchFailed = append(patchFailed, DeviceFailure{Device: id, Reason: "canceled"})
				continue
			}
			patchFailed = append(patchFailed, DeviceFailure{Device: id, Reason: "changing desired state: " + err.Error()})
			continue
		}
		if p := pending(want, reported); p != "" {
			why[id] = p
		} else {
			br.Converged = append(br.Converged, id)
		}
	}
	deadline := clock.Now().Add(timeout)
	for len(why) > 0 && ctx.Err() == nil {
		now := clock.Now()
		if !now.Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-clock.After(min(poll, deadline.Sub(now))):
		}
		if ctx.Err() != nil {
			break
		}
		for _, id := range batch {
			if _, waiting := why[id]; !waiting {
				continue
			}
			reported, err := r.API.Reported(ctx, id)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				// Keep polling: the hub may be restarting. The error is the
				// reason if it persists until the deadline.
				why[id] = "reading shadow: " + err.Error()
			default:
				if p := pending(want, reported); p != "" {
					why[id] = p
				} else {
					delete(why, id)
					br.Converged = append(br.Converged, id)
				}
			}
		}
	}
	for _, id := range batch {
		if reason, waiting := why[id]; waiting {
			if ctx.Err() != nil {
				reason = "canceled; last: " + reason
			}
			br.Failed = append(br.Failed, DeviceFailure{Device: id, Reason: reason})
		}
	}
	br.Failed = append(br.Failed, patchFailed...)
	slices.SortFunc(br.Failed, func(a, b DeviceFailure) int { return strings.Compare(a.Device, b.Device) })
	slices.Sort(br.Converged)
	br.Elapsed = clock.Now().Sub(start)
	br.ElapsedMS = br.Elapsed.Milliseconds()
	return br
}
