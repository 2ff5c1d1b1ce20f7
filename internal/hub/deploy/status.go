package deploy

import (
	"context"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/protocol"
)

// DeviceStatus is one assigned device's state of a service.
type DeviceStatus struct {
	Device string `json:"device"`
	Online bool   `json:"online"`
	// Revision is the revision the hub assigned; ReportedRevision the one
	// the device reports about (empty before its first report).
	Revision         string `json:"revision"`
	ReportedRevision string `json:"reported_revision,omitempty"`
	// The rest is the device's last report (protocol.WorkloadReport).
	Version  string                 `json:"version,omitempty"`
	State    string                 `json:"state,omitempty"`
	Healthy  bool                   `json:"healthy"`
	Restarts int                    `json:"restarts"`
	LastExit *protocol.WorkloadExit `json:"last_exit,omitempty"`
	Limits   string                 `json:"limits,omitempty"`
	Error    string                 `json:"error,omitempty"`
}

// Status is a deployment with its devices' reports.
type Status struct {
	Deployment
	// Updated counts the devices that report the current revision running
	// and healthy.
	Updated int `json:"updated"`
	// DeviceStates are the assigned devices, by id.
	DeviceStates []DeviceStatus `json:"device_states"`
}

// Status returns a deployment and what each of its devices reports.
func (s *Service) Status(ctx context.Context, name string) (Status, error) {
	d, err := s.store.get(ctx, name)
	if err != nil {
		return Status{}, err
	}
	online, err := s.online(ctx)
	if err != nil {
		return Status{}, err
	}
	return s.status(ctx, d, online)
}

// List returns every deployment with its devices' reports, by name.
func (s *Service) List(ctx context.Context) ([]Status, error) {
	ds, err := s.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	online, err := s.online(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(ds))
	for i, d := range ds {
		if out[i], err = s.status(ctx, d, online); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Service) online(ctx context.Context) (map[string]bool, error) {
	all, err := s.devices.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	m := make(map[string]bool, len(all))
	for _, d := range all {
		m[d.ID] = d.Online
	}
	return m, nil
}

func (s *Service) status(ctx context.Context, d Deployment, online map[string]bool) (Status, error) {
	st := Status{Deployment: d, DeviceStates: []DeviceStatus{}}
	for _, id := range sortedKeys(d.Devices) {
		ds := DeviceStatus{Device: id, Online: online[id], Revision: d.Devices[id].Revision}
		reports, err := s.reports(ctx, id)
		if err != nil {
			return Status{}, err
		}
		if r, ok := reports[d.Name]; ok {
			ds.ReportedRevision, ds.Version, ds.State, ds.Healthy = r.Revision, r.Version, r.State, r.Healthy
			ds.Restarts, ds.LastExit, ds.Limits, ds.Error = r.Restarts, r.LastExit, r.Limits, r.Error
			if r.Revision == d.Revision && r.Healthy && r.State == "running" {
				st.Updated++
			}
		}
		st.DeviceStates = append(st.DeviceStates, ds)
	}
	return st, nil
}

// reports reads reported.workloads of a device's workloads shadow; none
// when the shadow does not exist.
func (s *Service) reports(ctx context.Context, id string) (map[string]protocol.WorkloadReport, error) {
	doc, err := s.shadows.Get(ctx, id, protocol.WorkloadsShadow)
	if errors.Is(err, shadow.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the workloads shadow of %s: %w", id, err)
	}
	reported, _ := doc.State["reported"].(map[string]any)
	reports, bad := protocol.DecodeWorkloadReports(reported[protocol.WorkloadsKey])
	if len(bad) > 0 {
		s.log.Warn("device reports workloads that do not decode", "device", id, "services", bad)
	}
	return reports, nil
}

// The hub's shadow service is what Service reads and writes.
var _ Shadows = (*shadow.Service)(nil)
