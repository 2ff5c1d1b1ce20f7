package protocol

import (
	"encoding/json"
	"strings"
	"time"
)

// Service deployment (docs/deploy.md). The hub delivers a device's
// workloads through the device's named shadow "workloads":
//
//	desired.workloads.{service} = WorkloadDesired   (written by the hub)
//	reported.workloads.{service} = WorkloadReport   (written by the agent)
//
// A service the hub removes gets desired.workloads.{service} = null; the
// agent stops it and reports null for it. The spec travels as one JSON
// string so that replacing it never merges an old spec into a new one.

// WorkloadsShadow is the named shadow that carries a device's workloads.
const WorkloadsShadow = "workloads"

// WorkloadsKey is the key under desired and reported that holds the
// workloads by service name.
const WorkloadsKey = "workloads"

// WorkloadDesired is one service the hub wants on a device.
type WorkloadDesired struct {
	// Revision is deployspec.Spec.Revision() of Spec.
	Revision string `json:"revision"`
	// Spec is the canonical JSON of the service's deployspec.Spec
	// (deployspec.Spec.Canonical()).
	Spec string `json:"spec"`
}

// Workload states a device reports (WorkloadReport.State): the
// supervisor's states (starting, running, backoff, stopping, stopped,
// failed) and the agent's own before a process exists.
const (
	WorkloadDownloading = "downloading" // the artifact is being fetched and verified
	WorkloadPending     = "pending"     // accepted, waiting to start
	WorkloadError       = "error"       // cannot run: bad spec, artifact refused, …; Error says why
)

// WorkloadReport is one service's state as the device reports it.
type WorkloadReport struct {
	// Revision is the revision this report is about: the one running, or
	// the one being fetched while State is downloading or error.
	Revision string `json:"revision"`
	// Version is the artifact version (NAME@VERSION's VERSION) running.
	Version string `json:"version"`
	State   string `json:"state"`
	Healthy bool   `json:"healthy"`
	// Restarts counts restarts of this revision after exits and failed
	// health checks.
	Restarts int `json:"restarts"`
	// LastExit is how the previous process ended, if one did.
	LastExit *WorkloadExit `json:"last_exit,omitempty"`
	// Limits says whether the resource limits are enforced, e.g.
	// "cgroup v2", or "memory: rlimit; cpu: not enforced (…)".
	Limits string `json:"limits,omitempty"`
	// Error is why the workload cannot run (State error), or the last
	// health check error.
	Error string `json:"error,omitempty"`
	// Since is when State last changed, in Unix milliseconds.
	Since int64 `json:"since,omitempty"`
	// Address is where other devices reach the device's services (the
	// agent's workloads.advertise_address): the hub registers the
	// service's instance at Address and the spec's first port.
	Address string `json:"address,omitempty"`
}

// WorkloadExit is how a workload's process ended.
type WorkloadExit struct {
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	// Reason: completed, error, signaled, oom_killed, unhealthy, stopped,
	// start_failed.
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"`
	// Time in Unix milliseconds.
	Time int64 `json:"time"`
}

// Service logs: the hub asks a device for a service's recent log lines
// by publishing a LogsRequest to LogsRequestTopic(device); the device
// answers with a LogsResponse on LogsResponseTopic(device).
const (
	KindLogsRequest  = "logs-request"
	KindLogsResponse = "logs"
)

// LogsRequestTopic is where the hub asks a device for logs.
func LogsRequestTopic(deviceID string) string { return TopicPrefix + deviceID + "/" + KindLogsRequest }

// LogsResponseTopic is where a device answers a LogsRequest.
func LogsResponseTopic(deviceID string) string {
	return TopicPrefix + deviceID + "/" + KindLogsResponse
}

// LogsResponseFilter matches every device's log answers.
const LogsResponseFilter = TopicPrefix + "+/" + KindLogsResponse

// Limits on log requests.
const (
	// MaxLogLines is the most lines one LogsResponse carries.
	MaxLogLines = 1000
	// MaxLogsResponseBytes bounds a LogsResponse's encoding; the device
	// drops the oldest lines to stay below it.
	MaxLogsResponseBytes = 256 << 10
)

// LogsRequest asks for a service's log lines.
type LogsRequest struct {
	// ID is echoed in the response: 1 to 64 bytes.
	ID      string `json:"id"`
	Service string `json:"service"`
	// Tail is how many of the newest lines to return (MaxLogLines when 0
	// or larger).
	Tail int `json:"tail,omitempty"`
	// After, when not 0, asks only for lines with Seq > After (follow
	// mode); Tail still bounds how many.
	After uint64 `json:"after,omitempty"`
}

// LogLine is one line of a service's output.
type LogLine struct {
	// Seq numbers the service's lines on this device since the agent
	// started, from 1.
	Seq uint64 `json:"seq"`
	// Time in Unix milliseconds.
	Time int64  `json:"time"`
	Line string `json:"line"`
}

// LogsResponse answers a LogsRequest.
type LogsResponse struct {
	ID      string    `json:"id"`
	Service string    `json:"service"`
	Lines   []LogLine `json:"lines"`
	// Last is the Seq of the newest line the device holds for the service
	// (0 when none): the After of the next follow request.
	Last uint64 `json:"last"`
	// Error is set when the device has no such service.
	Error string `json:"error,omitempty"`
}

// DecodeWorkloadReports reads reported.workloads from a shadow section: v
// is the value under WorkloadsKey. Null entries are left out; entries that
// do not decode are returned in bad.
func DecodeWorkloadReports(v any) (reports map[string]WorkloadReport, bad []string) {
	return decodeWorkloadMap[WorkloadReport](v)
}

// DecodeWorkloadsDesired reads desired.workloads from a shadow section: v
// is the value under WorkloadsKey. Null entries are left out; entries that
// do not decode are returned in bad.
func DecodeWorkloadsDesired(v any) (desired map[string]WorkloadDesired, bad []string) {
	return decodeWorkloadMap[WorkloadDesired](v)
}

func decodeWorkloadMap[T any](v any) (map[string]T, []string) {
	out := map[string]T{}
	m, ok := v.(map[string]any)
	if !ok {
		return out, nil
	}
	var bad []string
	for name, raw := range m {
		if raw == nil {
			continue
		}
		b, err := json.Marshal(raw)
		var t T
		if err == nil {
			err = json.Unmarshal(b, &t)
		}
		if err != nil {
			bad = append(bad, name)
			continue
		}
		out[name] = t
	}
	return out, bad
}

// UnixMs returns t in Unix milliseconds, 0 for the zero time.
func UnixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// ValidLogsRequestID reports whether id may be a LogsRequest.ID.
func ValidLogsRequestID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, "\x00\n")
}
