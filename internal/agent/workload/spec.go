package workload

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/lazyre"
)

// Limits on a Spec: it arrives from the hub, so every part is bounded.
const (
	// MaxArgs is the largest number of arguments (and of exec health
	// check words).
	MaxArgs = 256
	// MaxEnv is the largest number of environment variables.
	MaxEnv = 256
	// MaxStringLen bounds any single string in a Spec (an argument, an
	// environment value, a path).
	MaxStringLen = 4096
	// MinMemoryBytes is the smallest memory limit accepted; below it a
	// process cannot even start.
	MinMemoryBytes = 4 << 20
)

// Defaults applied to zero fields of a Spec.
const (
	DefaultHealthInterval   = 10 * time.Second
	DefaultHealthTimeout    = time.Second
	DefaultFailureThreshold = 3
	DefaultBackoffMin       = time.Second
	DefaultBackoffMax       = 5 * time.Minute
	DefaultStableAfter      = time.Minute
)

// Spec is one desired workload. It is what the hub deploys; Apply takes
// the full desired set.
type Spec struct {
	// Name identifies the workload on this device: 1–63 characters of
	// a-z, 0-9 and '-', starting with a letter or digit (a DNS label). It
	// names the log directory and the cgroup.
	Name string `json:"name"`
	// Version is informational (Status reports it); any change of the
	// Spec, a new Version included, replaces the process.
	Version string `json:"version,omitempty"`
	// Binary is the absolute path of an executable already on disk.
	Binary string `json:"binary"`
	// Args are the arguments after the program name. No shell is involved.
	Args []string `json:"args,omitempty"`
	// Env is the process's whole environment besides PATH (and HOME,
	// USER when User is set), OUTPOST_WORKLOAD and
	// OUTPOST_WORKLOAD_VERSION; the agent's own environment is not
	// inherited. Env overrides those defaults.
	Env map[string]string `json:"env,omitempty"`
	// User, if set, is the unprivileged user (name or numeric uid) the
	// process runs as. That needs the agent to run as root; otherwise
	// only the agent's own user is accepted. "root" and uid 0 are refused.
	User string `json:"user,omitempty"`
	// Resources are the limits; zero means unlimited.
	Resources Resources `json:"resources,omitzero"`
	// Health is the optional liveness check.
	Health *HealthCheck `json:"health,omitempty"`
	// Restart says when and how fast an exited process is restarted.
	Restart Restart `json:"restart,omitzero"`
}

// Resources are a workload's limits. Status.Limits says which of them are
// enforced and how.
type Resources struct {
	// CPUMilli is the CPU bandwidth in thousandths of a CPU (500 = half a
	// core). Enforced only with cgroup v2 (cpu.max).
	CPUMilli int64 `json:"cpuMilli,omitempty"`
	// MemoryBytes caps memory: cgroup v2 memory.max (resident memory;
	// exceeding it gets the process OOM-killed), else the agent's
	// watchdog (resident memory polled every 250ms; above it the process
	// group is killed).
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
}

// HealthCheckType selects how a HealthCheck probes the workload.
type HealthCheckType string

// The health check types.
const (
	// HealthHTTP: GET http://ADDRESS:Port{Path} (ADDRESS is
	// Options.Address, 127.0.0.1 by default); a 2xx or 3xx answer
	// is healthy.
	HealthHTTP HealthCheckType = "http"
	// HealthTCP: a TCP connection to ADDRESS:Port succeeds.
	HealthTCP HealthCheckType = "tcp"
	// HealthExec: Command (no shell) exits 0 within Timeout. It runs
	// with the workload's user and environment.
	HealthExec HealthCheckType = "exec"
)

// HealthCheck is a liveness check, run by the agent every Interval once
// the process started. FailureThreshold consecutive failures make the
// workload unhealthy and get the process stopped and restarted, whatever
// the restart policy (Kubernetes liveness semantics). There is no initial
// delay: a slow starter has Interval×FailureThreshold to become healthy.
type HealthCheck struct {
	Type HealthCheckType `json:"type"`
	// Port is the local TCP port for http and tcp checks.
	Port int `json:"port,omitempty"`
	// Path is the HTTP path, "/" when empty.
	Path string `json:"path,omitempty"`
	// Command is the exec check's program and arguments.
	Command []string `json:"command,omitempty"`
	// Interval between checks; DefaultHealthInterval when zero.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout of one check; DefaultHealthTimeout when zero. At most
	// Interval.
	Timeout time.Duration `json:"timeout,omitempty"`
	// FailureThreshold is the number of consecutive failures that make the
	// workload unhealthy; DefaultFailureThreshold when zero.
	FailureThreshold int `json:"failureThreshold,omitempty"`
}

// RestartPolicy says when an exited process is started again.
type RestartPolicy string

// The restart policies.
const (
	// RestartAlways restarts after every exit. The default.
	RestartAlways RestartPolicy = "always"
	// RestartOnFailure restarts unless the process exited with code 0 by
	// itself.
	RestartOnFailure RestartPolicy = "on-failure"
)

// Restart configures restarts. The wait before a restart starts at
// BackoffMin and doubles after each quick exit, up to BackoffMax; a
// process that ran for StableAfter or longer resets it to BackoffMin.
type Restart struct {
	Policy RestartPolicy `json:"policy,omitempty"`
	// BackoffMin is the first wait; DefaultBackoffMin when zero.
	BackoffMin time.Duration `json:"backoffMin,omitempty"`
	// BackoffMax caps the wait; DefaultBackoffMax when zero.
	BackoffMax time.Duration `json:"backoffMax,omitempty"`
	// StableAfter is how long a run must last to reset the backoff;
	// DefaultStableAfter when zero.
	StableAfter time.Duration `json:"stableAfter,omitempty"`
}

var (
	nameRE = lazyre.New(`^[a-z0-9][a-z0-9-]{0,62}$`)
	userRE = lazyre.New(`^[a-z_][a-z0-9_-]{0,31}\$?$|^[0-9]{1,10}$`)
	envRE  = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate reports every problem of s at once (errors.Join), each wrapping
// ErrInvalidSpec.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: workload %q: %s", ErrInvalidSpec, s.Name, fmt.Sprintf(format, args...)))
	}
	if !nameRE().MatchString(s.Name) {
		bad("name must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")
	}
	if len(s.Version) > 128 {
		bad("version longer than 128 characters")
	}
	switch {
	case s.Binary == "":
		bad("binary is required")
	case !filepath.IsAbs(s.Binary):
		bad("binary %q is not an absolute path", s.Binary)
	case len(s.Binary) > MaxStringLen:
		bad("binary path longer than %d bytes", MaxStringLen)
	}
	if len(s.Args) > MaxArgs {
		bad("%d args, at most %d", len(s.Args), MaxArgs)
	}
	for i, a := range s.Args {
		if len(a) > MaxStringLen || strings.IndexByte(a, 0) >= 0 {
			bad("args[%d] longer than %d bytes or contains NUL", i, MaxStringLen)
		}
	}
	if len(s.Env) > MaxEnv {
		bad("%d env variables, at most %d", len(s.Env), MaxEnv)
	}
	for k, v := range s.Env {
		if !envRE().MatchString(k) || len(k) > 256 {
			bad("env name %q is not a valid variable name", k)
		}
		if len(v) > MaxStringLen || strings.IndexByte(v, 0) >= 0 {
			bad("env %s longer than %d bytes or contains NUL", k, MaxStringLen)
		}
	}
	if s.User != "" {
		switch {
		case !userRE().MatchString(s.User):
			bad("user %q is not a user name or uid", s.User)
		case s.User == "root" || strings.Trim(s.User, "0") == "" && s.User[0] == '0':
			bad("user %q is root; use an unprivileged user or leave it empty", s.User)
		}
	}
	if s.Resources.CPUMilli < 0 {
		bad("resources.cpuMilli is negative")
	}
	if m := s.Resources.MemoryBytes; m < 0 || m > 0 && m < MinMemoryBytes {
		bad("resources.memoryBytes must be 0 (unlimited) or at least %d", MinMemoryBytes)
	}
	if h := s.Health; h != nil {
		switch h.Type {
		case HealthHTTP, HealthTCP:
			if h.Port < 1 || h.Port > 65535 {
				bad("health.port %d is not in 1-65535", h.Port)
			}
			if h.Type == HealthHTTP && h.Path != "" && (!strings.HasPrefix(h.Path, "/") || len(h.Path) > 1024) {
				bad("health.path %q must start with / and be at most 1024 bytes", h.Path)
			}
		case HealthExec:
			if len(h.Command) == 0 || !filepath.IsAbs(h.Command[0]) {
				bad("health.command must start with an absolute path")
			}
			if len(h.Command) > MaxArgs {
				bad("health.command has more than %d words", MaxArgs)
			}
		default:
			bad("health.type %q is not one of http, tcp, exec", h.Type)
		}
		if h.Interval < 0 || h.Timeout < 0 || h.FailureThreshold < 0 {
			bad("health interval, timeout and failureThreshold must not be negative")
		}
		if h.Interval > 0 && h.Interval < 10*time.Millisecond {
			bad("health.interval below 10ms")
		}
		if hh := h.withDefaults(); hh.Timeout > hh.Interval {
			bad("health.timeout %s exceeds health.interval %s", hh.Timeout, hh.Interval)
		}
	}
	switch s.Restart.Policy {
	case "", RestartAlways, RestartOnFailure:
	default:
		bad("restart.policy %q is not one of always, on-failure", s.Restart.Policy)
	}
	if s.Restart.BackoffMin < 0 || s.Restart.BackoffMax < 0 || s.Restart.StableAfter < 0 {
		bad("restart durations must not be negative")
	}
	if r := s.Restart.withDefaults(); r.BackoffMax < r.BackoffMin {
		bad("restart.backoffMax %s is below restart.backoffMin %s", r.BackoffMax, r.BackoffMin)
	}
	return errors.Join(errs...)
}

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = min(DefaultHealthTimeout, h.Interval)
	}
	if h.FailureThreshold == 0 {
		h.FailureThreshold = DefaultFailureThreshold
	}
	if h.Path == "" {
		h.Path = "/"
	}
	return h
}

func (r Restart) withDefaults() Restart {
	if r.Policy == "" {
		r.Policy = RestartAlways
	}
	if r.BackoffMin == 0 {
		r.BackoffMin = DefaultBackoffMin
	}
	if r.BackoffMax == 0 {
		r.BackoffMax = max(DefaultBackoffMax, r.BackoffMin)
	}
	if r.StableAfter == 0 {
		r.StableAfter = DefaultStableAfter
	}
	return r
}

// validateSet validates every spec and that names are unique.
func validateSet(specs []Spec) error {
	var errs []error
	seen := make(map[string]bool, len(specs))
	for i := range specs {
		if err := specs[i].Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[specs[i].Name] {
			errs = append(errs, fmt.Errorf("%w: workload %q: name used twice", ErrInvalidSpec, specs[i].Name))
		}
		seen[specs[i].Name] = true
	}
	return errors.Join(errs...)
}
