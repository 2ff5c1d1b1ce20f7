package deployspec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Spec is one service deployment: what to run (an artifact of type service
// with its arguments, environment, user and resource limits), how to tell it
// is healthy and restart it, where to run it (a device label selector) and
// how to roll a change out. docs/deploy-spec.md documents every key.
type Spec struct {
	// Name is the service's name (key name): 1 to 48 of a-z 0-9 -, starting
	// with a letter and not ending with -. Required.
	Name string `json:"name" yaml:"name"`
	// Artifact is the published artifact of type service to run (key
	// artifact), as NAME@VERSION, e.g. thermo-api@1.2.0. Required.
	Artifact string `json:"artifact" yaml:"artifact"`
	// Args are the command-line arguments (key args): at most 64, each at
	// most 4 KiB.
	Args []string `json:"args,omitempty" yaml:"args,omitempty"`
	// Env is the service's environment (key env): names of letters, digits
	// and _, not starting with a digit or OUTPOST_; values at most 4 KiB.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// Ports are the TCP ports the service listens on (key ports): 1 to
	// 65535, each once, at most 32. Their order does not matter.
	Ports []int `json:"ports,omitempty" yaml:"ports,omitempty"`
	// User is the unprivileged user to run as (key user): a user name or a
	// numeric uid, never root or 0. Empty leaves it to the agent.
	User string `json:"user,omitempty" yaml:"user,omitempty"`
	// Resources are the CPU and memory limits (key resources).
	Resources Resources `json:"resources" yaml:"resources"`
	// Health is the health check (key health); nil means none: the service
	// counts as healthy while its process runs.
	Health *Health `json:"health,omitempty" yaml:"health,omitempty"`
	// Restart says when and how fast a stopped service is started again
	// (key restart).
	Restart Restart `json:"restart" yaml:"restart"`
	// Selector picks the devices by label (key selector): a device must
	// carry every label. Empty selects every device.
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	// Strategy is how a new or changed spec is rolled out (key strategy).
	Strategy Strategy `json:"strategy" yaml:"strategy"`
}

// Resources are resource limits; a zero value means no limit.
type Resources struct {
	// CPU is the CPU limit (key resources.cpu), e.g. 200m or 0.5.
	CPU CPU `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	// Memory is the memory limit (key resources.memory), e.g. 64Mi; at
	// least 1Mi when set.
	Memory Memory `json:"memory,omitempty" yaml:"memory,omitempty"`
}

// Health is a health check: exactly one of HTTP, TCP and Exec, run every
// Interval. The service is unhealthy after FailureThreshold failures in a
// row and healthy again after one success.
type Health struct {
	// HTTP checks that GET http://127.0.0.1:PORT/PATH answers 2xx or 3xx
	// (key health.http).
	HTTP *HTTPCheck `json:"http,omitempty" yaml:"http,omitempty"`
	// TCP checks that 127.0.0.1:PORT accepts a connection (key health.tcp).
	TCP *TCPCheck `json:"tcp,omitempty" yaml:"tcp,omitempty"`
	// Exec runs a command that must exit 0 (key health.exec).
	Exec *ExecCheck `json:"exec,omitempty" yaml:"exec,omitempty"`
	// Interval is the time between checks (key health.interval), 1s to 1h.
	// Default 10s.
	Interval Duration `json:"interval" yaml:"interval"`
	// Timeout bounds one check (key health.timeout), above 0 and at most
	// Interval. Default 2s.
	Timeout Duration `json:"timeout" yaml:"timeout"`
	// FailureThreshold is how many failures in a row make the service
	// unhealthy (key health.failure_threshold), 1 to 100. Default 3.
	FailureThreshold int `json:"failure_threshold" yaml:"failure_threshold"`
}

// HTTPCheck is an HTTP health check.
type HTTPCheck struct {
	// Port is one of Spec.Ports (key health.http.port).
	Port int `json:"port" yaml:"port"`
	// Path is the request path (key health.http.path), starting with /.
	// Default /.
	Path string `json:"path" yaml:"path"`
}

// TCPCheck is a TCP connect health check.
type TCPCheck struct {
	// Port is one of Spec.Ports (key health.tcp.port).
	Port int `json:"port" yaml:"port"`
}

// ExecCheck is a command health check.
type ExecCheck struct {
	// Command is the program and its arguments (key health.exec.command),
	// run without a shell; 1 to 64 entries, the first not empty.
	Command []string `json:"command" yaml:"command"`
}

// The health check kinds, as Health.Kind returns them.
const (
	CheckHTTP = "http"
	CheckTCP  = "tcp"
	CheckExec = "exec"
)

// Kind returns which check h holds: "http", "tcp", "exec", or "" for none.
// A spec that passed Validate holds exactly one.
func (h Health) Kind() string {
	switch {
	case h.HTTP != nil:
		return CheckHTTP
	case h.TCP != nil:
		return CheckTCP
	case h.Exec != nil:
		return CheckExec
	}
	return ""
}

// Restart is the restart policy.
type Restart struct {
	// Policy is always (restart whenever the process exits) or on-failure
	// (only when it exits non-zero or is found unhealthy) (key
	// restart.policy). Default always.
	Policy string `json:"policy" yaml:"policy"`
	// BackoffMin is the first delay before a restart (key
	// restart.backoff_min), at least 100ms. Delays double after each
	// restart up to BackoffMax. Default 1s.
	BackoffMin Duration `json:"backoff_min" yaml:"backoff_min"`
	// BackoffMax is the largest delay (key restart.backoff_max), from
	// BackoffMin to 1h. Default 1m.
	BackoffMax Duration `json:"backoff_max" yaml:"backoff_max"`
}

// The restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
)

// Strategy is how a change is rolled out over the selected devices.
type Strategy struct {
	// Type is the rollout type (key strategy.type); rolling is the only
	// one. Default rolling.
	Type string `json:"type" yaml:"type"`
	// Batch is how many devices are updated at once (key strategy.batch):
	// a percentage such as 25% (rounded up) or a count such as 5.
	// Default 25%.
	Batch Batch `json:"batch" yaml:"batch"`
	// MaxUnavailable is how many updated devices may be unhealthy before
	// the rollout stops (key strategy.max_unavailable); 0 stops it at the
	// first. Default 1.
	MaxUnavailable int `json:"max_unavailable" yaml:"max_unavailable"`
	// Pause is the wait between batches (key strategy.pause), 0 to 24h.
	// Default 0.
	Pause Duration `json:"pause" yaml:"pause"`
	// HealthTimeout is how long a batch's devices have to run the new spec
	// and report healthy (key strategy.health_timeout), 1s to 24h.
	// Default 2m.
	HealthTimeout Duration `json:"health_timeout" yaml:"health_timeout"`
}

// StrategyRolling is the rolling strategy: batch after batch.
const StrategyRolling = "rolling"

// The defaults Parse applies to keys the spec leaves out.
const (
	DefaultHealthInterval   = 10 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultFailureThreshold = 3
	DefaultHTTPPath         = "/"
	DefaultRestartPolicy    = RestartAlways
	DefaultBackoffMin       = time.Second
	DefaultBackoffMax       = time.Minute
	DefaultStrategyType     = StrategyRolling
	DefaultBatchPercent     = 25
	DefaultMaxUnavailable   = 1
	DefaultPause            = 0
	DefaultRolloutTimeout   = 2 * time.Minute
)

// Default returns a spec holding every default: what Parse starts from. It
// has no name or artifact, so it does not validate on its own.
func Default() Spec {
	return Spec{
		Restart: Restart{
			Policy:     DefaultRestartPolicy,
			BackoffMin: Duration(DefaultBackoffMin),
			BackoffMax: Duration(DefaultBackoffMax),
		},
		Strategy: Strategy{
			Type:           DefaultStrategyType,
			Batch:          Batch{Percent: DefaultBatchPercent},
			MaxUnavailable: DefaultMaxUnavailable,
			Pause:          DefaultPause,
			HealthTimeout:  Duration(DefaultRolloutTimeout),
		},
	}
}

// DefaultHealth returns a health check with the default interval, timeout
// and failure threshold and no check kind yet: what Parse starts a health
// key from.
func DefaultHealth() Health {
	return Health{
		Interval:         Duration(DefaultHealthInterval),
		Timeout:          Duration(DefaultHealthTimeout),
		FailureThreshold: DefaultFailureThreshold,
	}
}

// ArtifactName returns the NAME of Artifact (NAME@VERSION), or "" when
// Artifact has no @.
func (s Spec) ArtifactName() string {
	name, _, ok := strings.Cut(s.Artifact, "@")
	if !ok {
		return ""
	}
	return name
}

// ArtifactVersion returns the VERSION of Artifact (NAME@VERSION), or ""
// when Artifact has no @.
func (s Spec) ArtifactVersion() string {
	_, version, _ := strings.Cut(s.Artifact, "@")
	return version
}

// Canonical returns the canonical JSON encoding of s: compact, keys in a
// fixed order (struct order; map keys sorted), quantities and durations in
// their canonical forms, every default written out and ports sorted. Two
// specs that mean the same have the same canonical form, and Parse reads it
// back to an equal spec.
func (s Spec) Canonical() []byte {
	if len(s.Ports) > 0 {
		s.Ports = slices.Sorted(slices.Values(s.Ports))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		// Every field's encoder is infallible; reaching this is a bug.
		panic("deployspec: encoding spec: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// RevisionLen is the length of a revision in hex digits (64 bits).
const RevisionLen = 16

// Revision returns a short stable hash of the canonical form: the first 16
// hex digits of its SHA-256. It changes whenever the spec's meaning
// changes, and only then, so a device can compare it with the revision it
// runs to know its workload changed.
func (s Spec) Revision() string {
	sum := sha256.Sum256(s.Canonical())
	return hex.EncodeToString(sum[:])[:RevisionLen]
}

// Equal reports whether s and o mean the same: whether their canonical
// forms are equal.
func (s Spec) Equal(o Spec) bool { return bytes.Equal(s.Canonical(), o.Canonical()) }
