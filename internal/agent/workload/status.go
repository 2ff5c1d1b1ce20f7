package workload

import "time"

// State is where a workload is in its life cycle.
type State string

// The states.
const (
	// StateStarting: the process runs, its health check has not passed
	// yet.
	StateStarting State = "starting"
	// StateRunning: the process runs and is healthy (or has no check).
	StateRunning State = "running"
	// StateBackoff: the process exited and waits for its restart.
	StateBackoff State = "backoff"
	// StateStopping: the process got SIGTERM (removal, replacement,
	// shutdown, failed liveness) and has not exited yet.
	StateStopping State = "stopping"
	// StateStopped: no process and none planned: policy on-failure after
	// exit code 0, or the supervisor shut down.
	StateStopped State = "stopped"
	// StateFailed: the process could not be started (missing binary,
	// unknown user, …); it is retried with backoff like a crash.
	StateFailed State = "failed"
)

// Exit reasons (Exit.Reason). They are part of the status contract: add,
// never rename.
const (
	// ReasonCompleted: exit code 0.
	ReasonCompleted = "completed"
	// ReasonError: a non-zero exit code.
	ReasonError = "error"
	// ReasonSignaled: killed by a signal the supervisor did not send.
	ReasonSignaled = "signaled"
	// ReasonOOMKilled: it was killed for exceeding its memory limit: by
	// the kernel's OOM killer for its cgroup v2 memory.max (memory.events
	// oom_kill increased), or, without cgroup v2, by the agent's
	// resident-memory watchdog (Exit.Error says so).
	ReasonOOMKilled = "oom_killed"
	// ReasonUnhealthy: stopped by the supervisor after FailureThreshold
	// failed health checks.
	ReasonUnhealthy = "unhealthy"
	// ReasonStopped: stopped by the supervisor (removal, replacement,
	// shutdown).
	ReasonStopped = "stopped"
	// ReasonStartFailed: the process could not be started.
	ReasonStartFailed = "start_failed"
)

// Status is a snapshot of one workload.
type Status struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   State  `json:"state"`
	// PID of the running process, 0 when there is none.
	PID int `json:"pid,omitempty"`
	// StartedAt is when the current (or last) process started.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Healthy is true while the process runs and passes its health check
	// (or has none).
	Healthy bool `json:"healthy"`
	// HealthError is the last failed check's error, "" after a success.
	HealthError string `json:"healthError,omitempty"`
	// Restarts counts restarts of this Spec after an exit or a failed
	// liveness check; replacing the Spec resets it.
	Restarts int `json:"restarts"`
	// NextStart is when a workload in backoff or failed starts again.
	NextStart time.Time `json:"nextStart,omitzero"`
	// LastExit describes the previous process's end; nil before the first.
	LastExit *Exit `json:"lastExit,omitempty"`
	// Limits says which resource limits apply to the current process.
	Limits Limits `json:"limits"`
}

// Exit describes how a process ended.
type Exit struct {
	// Code is the exit code, -1 when killed by a signal or never started.
	Code int `json:"code"`
	// Signal names the signal that killed it ("killed", "terminated"), if
	// any.
	Signal string    `json:"signal,omitempty"`
	Time   time.Time `json:"time"`
	// Reason is one of the Reason… constants.
	Reason string `json:"reason"`
	// Error is a human-readable detail (a start error, the last health
	// check error).
	Error string `json:"error,omitempty"`
}

// Limits reports, per resource, whether and how its limit is enforced.
type Limits struct {
	CPU    LimitStatus `json:"cpu"`
	Memory LimitStatus `json:"memory"`
}

// How a limit is enforced (LimitStatus.Via).
const (
	ViaCgroupV2 = "cgroup v2"
	// ViaWatchdog: no cgroup v2; the agent polls the process's resident
	// memory and kills it above the limit.
	ViaWatchdog = "watchdog"
	ViaNone     = "none"
)

// LimitStatus is one resource's limit as applied.
type LimitStatus struct {
	// Requested is the Spec's value (millicores or bytes), 0 for none.
	Requested int64 `json:"requested"`
	Enforced  bool  `json:"enforced"`
	// Via is ViaCgroupV2, ViaWatchdog or ViaNone.
	Via string `json:"via"`
	// Reason says why the limit is not enforced.
	Reason string `json:"reason,omitempty"`
}
