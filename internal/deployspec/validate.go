package deployspec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/lazyre"
)

// Limits of a spec, besides MaxBytes.
const (
	MaxNameLen        = 48
	MaxArgs           = 64      // entries of args and of health.exec.command
	MaxArgBytes       = 4 << 10 // one argument
	MaxEnv            = 128     // entries of env
	MaxEnvNameLen     = 128
	MaxEnvValueBytes  = 4 << 10
	MaxPorts          = 32
	MaxHTTPPathLen    = 1024
	MaxLabels         = 32 // entries of selector, as for device labels
	MaxLabelKeyLen    = 63
	MaxLabelValueLen  = 255
	MinMemory         = Memory(1 << 20)
	MinHealthInterval = time.Second
	MaxHealthInterval = time.Hour
	MaxFailures       = 100
	MinBackoff        = 100 * time.Millisecond
	MaxBackoff        = time.Hour
	MaxPause          = 24 * time.Hour
	MinRolloutTimeout = time.Second
	MaxRolloutTimeout = 24 * time.Hour
)

// ReservedEnvPrefix starts the names of the variables the agent sets for a
// service; a spec may not set them.
const ReservedEnvPrefix = "OUTPOST_"

var (
	nameRE = lazyre.New(`^[a-z][a-z0-9-]*$`)
	// artifactNameRE and versionRE mirror the hub's artifact rules
	// (internal/hub/ota), which this package must not import.
	artifactNameRE = lazyre.New(`^[a-z0-9_-][a-z0-9._-]{0,63}$`)
	versionRE      = lazyre.New(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
	envNameRE      = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userRE         = lazyre.New(`^[a-z_][a-z0-9_-]{0,31}$`)
	labelKeyRE     = lazyre.New(`^[A-Za-z0-9._/-]{1,63}$`)
)

// problems collects Problems; add formats one.
type problems Problems

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Validate reports every problem of s at once as Problems (nil when there
// are none), each naming its key. It checks syntax and limits only: that
// the artifact is published with type service is the hub's business.
func (s Spec) Validate() error {
	var ps problems

	switch {
	case s.Name == "":
		ps.add("name", "missing")
	case len(s.Name) > MaxNameLen || !nameRE().MatchString(s.Name) || strings.HasSuffix(s.Name, "-"):
		ps.add("name", "%q: want 1–%d of a-z 0-9 -, starting with a letter and not ending with -", s.Name, MaxNameLen)
	}
	validateArtifact(&ps, s.Artifact)
	validateArgs(&ps, "args", s.Args, 0)
	validateEnv(&ps, s.Env)
	validatePorts(&ps, s.Ports)
	validateUser(&ps, s.User)

	if s.Resources.CPU < 0 {
		ps.add("resources.cpu", "%s: must not be negative", s.Resources.CPU)
	}
	if m := s.Resources.Memory; m < 0 {
		ps.add("resources.memory", "%s: must not be negative", m)
	} else if m != 0 && m < MinMemory {
		ps.add("resources.memory", "%s: at least %s when set (0 or no key means no limit)", m, MinMemory)
	}

	if s.Health != nil {
		validateHealth(&ps, *s.Health, s.Ports)
	}
	validateRestart(&ps, s.Restart)
	validateSelector(&ps, s.Selector)
	validateStrategy(&ps, s.Strategy)
	return Problems(ps).err()
}

func validateArtifact(ps *problems, a string) {
	if a == "" {
		ps.add("artifact", "missing; want NAME@VERSION of a published service artifact, e.g. thermo-api@1.2.0")
		return
	}
	name, version, ok := strings.Cut(a, "@")
	switch {
	case !ok:
		ps.add("artifact", "%q: want NAME@VERSION, e.g. thermo-api@1.2.0", a)
	case !artifactNameRE().MatchString(name):
		ps.add("artifact", "%q: name %q must be 1–64 of a-z 0-9 . _ -, not starting with .", a, name)
	case len(version) > 64 || !versionRE().MatchString(version):
		ps.add("artifact", "%q: version %q must be a semantic version MAJOR.MINOR.PATCH[-pre]", a, version)
	}
}

// validateArgs checks a command line; first is the index from which entries
// may be empty (1 for a command, whose program must be named).
func validateArgs(ps *problems, path string, args []string, first int) {
	if len(args) > MaxArgs {
		ps.add(path, "%d entries, at most %d", len(args), MaxArgs)
	}
	for i, a := range args {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case i < first && a == "":
			ps.add(p, "empty")
		case len(a) > MaxArgBytes:
			ps.add(p, "%d bytes, at most %d", len(a), MaxArgBytes)
		case strings.IndexByte(a, 0) >= 0:
			ps.add(p, "contains a NUL byte")
		}
	}
}

func validateEnv(ps *problems, env map[string]string) {
	if len(env) > MaxEnv {
		ps.add("env", "%d variables, at most %d", len(env), MaxEnv)
	}
	for _, k := range sortedKeys(env) {
		v, p := env[k], "env."+k
		switch {
		case len(k) > MaxEnvNameLen || !envNameRE().MatchString(k):
			ps.add(p, "%q is not a valid variable name: letters, digits and _, not starting with a digit, at most %d", k, MaxEnvNameLen)
		case strings.HasPrefix(strings.ToUpper(k), ReservedEnvPrefix):
			ps.add(p, "names starting with %s are reserved for the agent", ReservedEnvPrefix)
		}
		switch {
		case len(v) > MaxEnvValueBytes:
			ps.add(p, "value of %d bytes, at most %d", len(v), MaxEnvValueBytes)
		case strings.IndexByte(v, 0) >= 0:
			ps.add(p, "value contains a NUL byte")
		}
	}
}

func validatePorts(ps *problems, ports []int) {
	if len(ports) > MaxPorts {
		ps.add("ports", "%d ports, at most %d", len(ports), MaxPorts)
	}
	seen := make(map[int]bool, len(ports))
	for i, port := range ports {
		p := fmt.Sprintf("ports[%d]", i)
		switch {
		case port < 1 || port > 65535:
			ps.add(p, "%d is not a TCP port (1–65535)", port)
		case seen[port]:
			ps.add(p, "%d is listed twice", port)
		}
		seen[port] = true
	}
}

func validateUser(ps *problems, u string) {
	if u == "" {
		return
	}
	if uid, err := strconv.ParseUint(u, 10, 32); err == nil {
		if uid == 0 || uid == 1<<32-1 {
			ps.add("user", "%q: must be an unprivileged user, not uid %d", u, uid)
		}
		return
	}
	switch {
	case u == "root":
		ps.add("user", "%q: must be an unprivileged user", u)
	case !userRE().MatchString(u):
		ps.add("user", "%q: want a user name (1–32 of a-z 0-9 _ -, not starting with a digit or -) or a numeric uid", u)
	}
}

func validateHealth(ps *problems, h Health, ports []int) {
	var kinds []string
	if h.HTTP != nil {
		kinds = append(kinds, CheckHTTP)
		validateCheckPort(ps, "health.http.port", h.HTTP.Port, ports)
		switch path := h.HTTP.Path; {
		case !strings.HasPrefix(path, "/"):
			ps.add("health.http.path", "%q: must start with /", path)
		case len(path) > MaxHTTPPathLen:
			ps.add("health.http.path", "%d bytes, at most %d", len(path), MaxHTTPPathLen)
		case strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			ps.add("health.http.path", "%q: must not contain spaces or control characters", path)
		}
	}
	if h.TCP != nil {
		kinds = append(kinds, CheckTCP)
		validateCheckPort(ps, "health.tcp.port", h.TCP.Port, ports)
	}
	if h.Exec != nil {
		kinds = append(kinds, CheckExec)
		if len(h.Exec.Command) == 0 {
			ps.add("health.exec.command", "missing; want the program and its arguments, e.g. [/usr/bin/check, --quick]")
		}
		validateArgs(ps, "health.exec.command", h.Exec.Command, 1)
	}
	switch len(kinds) {
	case 0:
		ps.add("health", "set one check: http, tcp or exec")
	case 1:
	default:
		ps.add("health", "set only one of http, tcp and exec, got %s", strings.Join(kinds, " and "))
	}
	if h.Interval.D() < MinHealthInterval || h.Interval.D() > MaxHealthInterval {
		ps.add("health.interval", "%s: want %s to %s", h.Interval, MinHealthInterval, MaxHealthInterval)
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		ps.add("health.timeout", "%s: want above 0 and at most health.interval (%s)", h.Timeout, h.Interval)
	}
	if h.FailureThreshold < 1 || h.FailureThreshold > MaxFailures {
		ps.add("health.failure_threshold", "%d: want 1 to %d", h.FailureThreshold, MaxFailures)
	}
}

func validateCheckPort(ps *problems, path string, port int, ports []int) {
	switch {
	case port == 0:
		ps.add(path, "missing")
	case port < 1 || port > 65535:
		ps.add(path, "%d is not a TCP port (1–65535)", port)
	case !slices.Contains(ports, port):
		ps.add(path, "%d is not among ports %v; add it there", port, ports)
	}
}

func validateRestart(ps *problems, r Restart) {
	switch r.Policy {
	case RestartAlways, RestartOnFailure:
	default:
		ps.add("restart.policy", "%q: want %s or %s", r.Policy, RestartAlways, RestartOnFailure)
	}
	if r.BackoffMin.D() < MinBackoff || r.BackoffMin.D() > MaxBackoff {
		ps.add("restart.backoff_min", "%s: want %s to %s", r.BackoffMin, MinBackoff, MaxBackoff)
	}
	if r.BackoffMax < r.BackoffMin || r.BackoffMax.D() > MaxBackoff {
		ps.add("restart.backoff_max", "%s: want restart.backoff_min (%s) to %s", r.BackoffMax, r.BackoffMin, MaxBackoff)
	}
}

func validateSelector(ps *problems, sel map[string]string) {
	if len(sel) > MaxLabels {
		ps.add("selector", "%d labels, at most %d", len(sel), MaxLabels)
	}
	for _, k := range sortedKeys(sel) {
		p := "selector." + k
		if !labelKeyRE().MatchString(k) {
			ps.add(p, "%q is not a label key: 1–%d of A-Z a-z 0-9 - _ . /", k, MaxLabelKeyLen)
		}
		if v := sel[k]; len(v) > MaxLabelValueLen {
			ps.add(p, "value of %d bytes, at most %d", len(v), MaxLabelValueLen)
		}
	}
}

func validateStrategy(ps *problems, st Strategy) {
	if st.Type != StrategyRolling {
		ps.add("strategy.type", "%q: want %s", st.Type, StrategyRolling)
	}
	if !st.Batch.valid() {
		ps.add("strategy.batch", "want a percentage above 0%% and at most 100%% (e.g. 25%%) or a number of devices (at least 1)")
	}
	if st.MaxUnavailable < 0 {
		ps.add("strategy.max_unavailable", "%d: must not be negative", st.MaxUnavailable)
	}
	if st.Pause < 0 || st.Pause.D() > MaxPause {
		ps.add("strategy.pause", "%s: want 0 to %s", st.Pause, MaxPause)
	}
	if st.HealthTimeout.D() < MinRolloutTimeout || st.HealthTimeout.D() > MaxRolloutTimeout {
		ps.add("strategy.health_timeout", "%s: want %s to %s", st.HealthTimeout, MinRolloutTimeout, MaxRolloutTimeout)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
