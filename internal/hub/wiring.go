package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/hub/deploy"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/jobs"
	"github.com/outpost-edge/outpost/internal/hub/ota"
	"github.com/outpost-edge/outpost/internal/hub/rollouts"
	"github.com/outpost-edge/outpost/internal/hub/store"
)

// rolloutJobs is the jobs service as the rollouts service uses it.
type rolloutJobs struct{ j *jobs.Service }

func (r rolloutJobs) CreateJob(ctx context.Context, sp rollouts.JobSpec) error {
	_, err := r.j.Create(ctx, jobs.Spec{
		ID: sp.ID, Document: sp.Document, Devices: sp.Devices,
		QueuedTimeout: sp.QueuedTimeout, InProgressTimeout: sp.InProgressTimeout, Rollout: sp.Rollout,
	})
	if errors.Is(err, jobs.ErrExists) {
		return fmt.Errorf("%w: %w", rollouts.ErrJobExists, err)
	}
	return err
}

func (r rolloutJobs) CancelJob(ctx context.Context, jobID string) error {
	return r.j.Cancel(ctx, jobID)
}

func (r rolloutJobs) Executions(ctx context.Context, jobID string) ([]rollouts.Execution, error) {
	execs, err := r.j.Executions(ctx, jobID)
	if err != nil {
		return nil, err
	}
	out := make([]rollouts.Execution, len(execs))
	for i, e := range execs {
		out[i] = rollouts.Execution{Device: e.DeviceID, Status: string(e.Status), StatusDetails: e.StatusDetails}
	}
	return out, nil
}

// rolloutDevices lists the devices a selector matches.
type rolloutDevices struct{ d *device.Service }

func (r rolloutDevices) MatchingIDs(ctx context.Context, sel map[string]string) ([]string, error) {
	ds, err := r.d.List(ctx, sel)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids, nil
}

// rolloutArtifacts looks artifacts up in the TUF repository.
type rolloutArtifacts struct{ o *ota.Service }

func (r rolloutArtifacts) ArtifactType(name, version string) (string, error) {
	as, err := r.o.Artifacts(name)
	if err != nil {
		return "", err
	}
	for _, a := range as {
		if a.Version == version {
			return a.Type, nil
		}
	}
	return "", errors.New("no such artifact in the repository")
}

// deployDevices is the device service as the deploy service uses it.
type deployDevices struct{ d *device.Service }

func (r deployDevices) All(ctx context.Context) ([]deploy.Device, error) {
	ds, err := r.d.List(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]deploy.Device, len(ds))
	for i, d := range ds {
		out[i] = deploy.Device{ID: d.ID, Labels: d.Labels, Online: d.Online}
	}
	return out, nil
}

func (r deployDevices) Get(ctx context.Context, id string) (deploy.Device, error) {
	d, err := r.d.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return deploy.Device{}, fmt.Errorf("%w: %w", deploy.ErrDeviceNotFound, err)
	}
	if err != nil {
		return deploy.Device{}, err
	}
	return deploy.Device{ID: d.ID, Labels: d.Labels, Online: d.Online}, nil
}
