package registry

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	serviceRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	idRE      = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// Check defaults, applied by Register when the fields are zero.
const (
	DefaultCheckInterval = 10 * time.Second
	DefaultCheckTimeout  = 5 * time.Second
)

// serviceRule is what serviceRE accepts, for error messages.
const serviceRule = "must be 1 to 63 of a-z 0-9 -, starting with a letter, not ending with -"

// validService reports whether name is a valid service name.
func validService(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("%w: service %q: %s", ErrInvalid, name, serviceRule)
	}
	return nil
}

func validHealth(h Health) bool { return h == Passing || h == Warning || h == Critical }

// normalize checks in, fills its defaults (ID, Source, Check defaults) and
// returns it; the error wraps ErrInvalid and lists every problem.
func normalize(in Instance) (Instance, error) {
	var probs []error
	add := func(format string, args ...any) { probs = append(probs, fmt.Errorf(format, args...)) }

	if !serviceRE.MatchString(in.Service) {
		add("service %q: %s", in.Service, serviceRule)
	}
	addrOK := in.Address != "" && (net.ParseIP(in.Address) != nil || hostRE.MatchString(in.Address))
	if !addrOK {
		add("address %q: must be an IP address or a host name", in.Address)
	}
	if in.Port < 1 || in.Port > 65535 {
		add("port %d: must be 1 to 65535", in.Port)
	}
	if in.ID == "" && addrOK && in.Port >= 1 && in.Port <= 65535 {
		in.ID = fmt.Sprintf("%s:%d", in.Address, in.Port)
	}
	if !idRE.MatchString(in.ID) {
		add("id %q: must be 1 to 128 of A-Z a-z 0-9 - _ . : /", in.ID)
	}
	for _, tag := range in.Tags {
		if tag == "" || len(tag) > 128 || strings.ContainsAny(tag, ", \t\n") {
			add("tag %q: must be 1 to 128 characters without commas or spaces", tag)
		}
	}
	for k := range in.Meta {
		if k == "" || len(k) > 128 {
			add("meta key %q: must be 1 to 128 characters", k)
		}
	}
	if in.Health != "" && !validHealth(in.Health) {
		add("health %q: must be passing, warning or critical", in.Health)
	}
	if in.TTL < 0 {
		add("ttl %s: must not be negative", in.TTL)
	}

	// Source follows from TTL and Check; a given Source must agree.
	src := ""
	switch {
	case in.TTL > 0 && in.Check != nil:
		add("ttl and check: give one, not both")
	case in.TTL > 0:
		src = SourceTTL
	case in.Check != nil:
		src = SourceCheck
	case in.Source == SourceAgent:
		src = SourceAgent
	default:
		add("ttl or check: one is required")
	}
	if in.Source != "" && src != "" && in.Source != src {
		add("source %q: does not match the registration (%s)", in.Source, src)
	}
	if in.Source != "" && !slices.Contains([]string{SourceAgent, SourceTTL, SourceCheck}, in.Source) {
		add("source %q: must be agent, ttl or check", in.Source)
	}
	if src == SourceAgent && in.Health == "" {
		add("health: required for agent instances")
	}
	if src != SourceAgent && in.Device != "" {
		add("device: only agent instances have one")
	}
	if in.Check != nil {
		c := *in.Check
		switch c.Type {
		case "http":
			if c.Path == "" {
				c.Path = "/"
			}
			if !strings.HasPrefix(c.Path, "/") {
				add("check path %q: must start with /", c.Path)
			}
		case "tcp":
			if c.Path != "" {
				add("check path %q: tcp checks have none", c.Path)
			}
		default:
			add("check type %q: must be http or tcp", c.Type)
		}
		if c.Interval < 0 {
			add("check interval %s: must not be negative", c.Interval)
		}
		if c.Timeout < 0 {
			add("check timeout %s: must not be negative", c.Timeout)
		}
		if c.Interval == 0 {
			c.Interval = DefaultCheckInterval
		}
		if c.Timeout == 0 {
			c.Timeout = min(DefaultCheckTimeout, c.Interval)
		}
		if c.Interval > 0 && c.Timeout > c.Interval {
			add("check timeout %s: must not exceed the interval %s", c.Timeout, c.Interval)
		}
		in.Check = &c
	}
	if len(probs) > 0 {
		return in, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(probs...))
	}
	in.Source = src
	return in, nil
}
