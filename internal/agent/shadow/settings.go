package shadow

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/config"
)

// Keys of reported that are the agent's own rather than settings.
const (
	// KeyErrors holds, per dotted desired key, why the agent did not apply
	// it; absent when every key applied.
	KeyErrors = "outpost_errors"
	// KeyVersion is the shadow version whose desired state the agent
	// applied.
	KeyVersion = "outpost_version"
)

// Settings are the parts of the agent's configuration the shadow changes:
// what runs now. The zero value is not useful; Baseline makes one.
type Settings struct {
	// LogLevel is the level of the agent's logger (key log_level).
	LogLevel slog.Level
	// QoS is the QoS of telemetry publishes (key telemetry.qos).
	QoS int
	// SpoolMaxBytes, SpoolMaxAge and SpoolOverflow are the spool limits
	// (keys spool.max_bytes, spool.max_age, spool.overflow).
	SpoolMaxBytes config.ByteSize
	SpoolMaxAge   config.Duration
	SpoolOverflow string
	// Sources are the settings of every source of agent.yaml, by name
	// (keys sources.NAME.…).
	Sources map[string]*SourceSettings
}

// SourceSettings are the changeable settings of one source.
type SourceSettings struct {
	// Interval is the time between reads (key sources.NAME.interval).
	Interval config.Duration
	// Enabled sources are read (key sources.NAME.enabled).
	Enabled bool
	// Report is the reporting strategy and its parameters (keys
	// sources.NAME.report.…), defaults filled in.
	Report config.Report
}

// Baseline returns the settings agent.yaml (cfg, validated) and the
// logger's starting level describe: what runs when desired is empty.
func Baseline(cfg config.Config, level slog.Level) Settings {
	s := Settings{
		LogLevel:      level,
		QoS:           cfg.Telemetry.QoS,
		SpoolMaxBytes: cfg.Spool.MaxBytes,
		SpoolMaxAge:   cfg.Spool.MaxAge,
		SpoolOverflow: cfg.Spool.Overflow,
		Sources:       make(map[string]*SourceSettings, len(cfg.Sources)),
	}
	for _, src := range cfg.Sources {
		d := src.WithDefaults()
		s.Sources[src.Name] = &SourceSettings{Interval: d.Interval, Enabled: true, Report: d.Report}
	}
	return s
}

// Clone returns a deep copy of s.
func (s Settings) Clone() Settings {
	c := s
	c.Sources = make(map[string]*SourceSettings, len(s.Sources))
	for k, v := range s.Sources {
		vv := *v
		c.Sources[k] = &vv
	}
	return c
}

// Equal reports whether s and o are the same settings.
func (s Settings) Equal(o Settings) bool {
	if s.LogLevel != o.LogLevel || s.QoS != o.QoS || s.SpoolMaxBytes != o.SpoolMaxBytes ||
		s.SpoolMaxAge != o.SpoolMaxAge || s.SpoolOverflow != o.SpoolOverflow || len(s.Sources) != len(o.Sources) {
		return false
	}
	for k, v := range s.Sources {
		w, ok := o.Sources[k]
		if !ok || *v != *w {
			return false
		}
	}
	return true
}

// Result is what Resolve makes of a desired state.
type Result struct {
	// Settings are the settings to run.
	Settings Settings
	// Applied maps each dotted desired key that is in force to the value
	// desired gave it, as desired spelt it (reported echoes it, so that
	// "0.2s" does not leave a delta against "200ms").
	Applied map[string]any
	// Errors maps each dotted desired key that was not applied to why.
	Errors map[string]string
}

// leaf is one desired value the agent understands, parsed.
type leaf struct {
	key, group string
	raw        any
	// bad, when not empty, is why the value cannot be parsed; set is nil.
	bad string
	// set writes the value into settings; keep copies the field from src.
	set  func(*Settings)
	keep func(dst, src *Settings)
}

// mkBad is the leaf of a value of field that cannot be parsed.
func mkBad[T any](key, group, why string, field func(*Settings) *T) leaf {
	return leaf{key: key, group: group, bad: why, keep: func(dst, src *Settings) { *field(dst) = *field(src) }}
}

func mkLeaf[T any](key, group string, raw any, v T, field func(*Settings) *T) leaf {
	return leaf{
		key: key, group: group, raw: raw,
		set:  func(s *Settings) { *field(s) = v },
		keep: func(dst, src *Settings) { *field(dst) = *field(src) },
	}
}

// Resolve works out the settings to run for desired, a shadow's
// state.desired as decoded by encoding/json: every key desired leaves out
// takes its agent.yaml value (base, from Baseline); every key it sets takes
// the desired value if that is valid under the rules of agent.yaml
// (cfg.Validate) and keeps its value in prev, what runs now, if not. Unknown
// keys, values of the wrong type and invalid values are listed in
// Result.Errors under their dotted key.
func Resolve(cfg config.Config, base, prev Settings, desired map[string]any) Result {
	res := Result{Applied: map[string]any{}, Errors: map[string]string{}}
	leaves := parse(base, desired, res.Errors)

	next := base.Clone()
	groups := map[string][]leaf{}
	var bad []leaf
	for _, l := range leaves {
		if l.bad != "" {
			bad = append(bad, l)
			continue
		}
		groups[l.group] = append(groups[l.group], l)
	}
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		ls := groups[g]
		cand := next.Clone()
		for _, l := range ls {
			l.set(&cand)
		}
		if len(validate(cfg, cand)) == 0 {
			next = cand
			for _, l := range ls {
				res.Applied[l.key] = l.raw
			}
			continue
		}
		// Some value of the group is wrong: take the values one by one,
		// keeping what runs now for those that do not validate.
		for _, l := range ls {
			cand := next.Clone()
			l.set(&cand)
			errs := validate(cfg, cand)
			if len(errs) == 0 {
				next = cand
				res.Applied[l.key] = l.raw
				continue
			}
			res.Errors[l.key] = pickError(l.key, errs)
			kept := next.Clone()
			l.keep(&kept, &prev)
			if len(validate(cfg, kept)) == 0 {
				next = kept
			}
		}
	}
	// Values that do not parse keep what runs now.
	for _, l := range bad {
		res.Errors[l.key] = l.bad
		kept := next.Clone()
		l.keep(&kept, &prev)
		if len(validate(cfg, kept)) == 0 {
			next = kept
		}
	}
	res.Settings = next
	return res
}

// pickError returns the message of errs about key, or all of them.
func pickError(key string, errs map[string]string) string {
	if m, ok := errs[key]; ok {
		return m
	}
	for k, m := range errs {
		if strings.HasPrefix(key, k+".") {
			return m
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, k+": "+errs[k])
	}
	return strings.Join(parts, "; ")
}

// validate checks s under the rules of agent.yaml and returns the problems
// by dotted shadow key.
func validate(cfg config.Config, s Settings) map[string]string {
	c := cfg
	c.Telemetry.QoS = s.QoS
	c.Spool.MaxBytes, c.Spool.MaxAge, c.Spool.Overflow = s.SpoolMaxBytes, s.SpoolMaxAge, s.SpoolOverflow
	c.Sources = slices.Clone(cfg.Sources)
	index := map[string]string{}
	for i := range c.Sources {
		src := &c.Sources[i]
		index[fmt.Sprintf("sources[%d]", i)] = "sources." + src.Name
		if ss, ok := s.Sources[src.Name]; ok {
			src.Interval, src.Report = ss.Interval, ss.Report
		}
	}
	err := c.Validate()
	if err == nil {
		return nil
	}
	out := map[string]string{}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		key, msg, ok := strings.Cut(e.Error(), ": ")
		if !ok {
			key, msg = "", e.Error()
		}
		if name, rest, ok := strings.Cut(key, "]"); ok {
			if k, found := index[name+"]"]; found {
				key = k + rest
			}
		}
		if prev, dup := out[key]; dup {
			msg = prev + "; " + msg
		}
		out[key] = msg
	}
	return out
}

// parse turns desired into leaves, recording unknown keys and values of
// the wrong type in errs.
// AppKey is the desired key that holds the device's apps' configuration;
// the agent leaves it to them (docs/agent-api.md).
const AppKey = "app"

func parse(base Settings, desired map[string]any, errs map[string]string) []leaf {
	var out []leaf
	for _, k := range slices.Sorted(maps.Keys(desired)) {
		v := desired[k]
		switch k {
		case AppKey:
			// The apps' own configuration: served to them by the local
			// API (GET /v1/config), not applied by the agent.
			continue
		case "log_level":
			s, ok := v.(string)
			var lvl slog.Level
			if !ok || lvl.UnmarshalText([]byte(s)) != nil {
				out = append(out, mkBad(k, k, fmt.Sprintf("must be debug, info, warn or error, got %s", show(v)), func(s *Settings) *slog.Level { return &s.LogLevel }))
				continue
			}
			out = append(out, mkLeaf(k, k, v, lvl, func(s *Settings) *slog.Level { return &s.LogLevel }))
		case "telemetry":
			obj, ok := object(k, v, errs)
			if !ok {
				continue
			}
			for _, kk := range slices.Sorted(maps.Keys(obj)) {
				key, vv := k+"."+kk, obj[kk]
				if kk != "qos" {
					errs[key] = "unknown key; the shadow can change telemetry.qos only"
					continue
				}
				n, ok := integer(vv)
				if !ok {
					out = append(out, mkBad(key, k, fmt.Sprintf("must be 0, 1 or 2, got %s", show(vv)), func(s *Settings) *int { return &s.QoS }))
					continue
				}
				out = append(out, mkLeaf(key, k, vv, n, func(s *Settings) *int { return &s.QoS }))
			}
		case "spool":
			obj, ok := object(k, v, errs)
			if !ok {
				continue
			}
			for _, kk := range slices.Sorted(maps.Keys(obj)) {
				key, vv := k+"."+kk, obj[kk]
				switch kk {
				case "max_bytes":
					b, err := byteSize(vv)
					if err != nil {
						out = append(out, mkBad(key, k, err.Error(), func(s *Settings) *config.ByteSize { return &s.SpoolMaxBytes }))
						continue
					}
					out = append(out, mkLeaf(key, k, vv, b, func(s *Settings) *config.ByteSize { return &s.SpoolMaxBytes }))
				case "max_age":
					d, err := duration(vv)
					if err != nil {
						out = append(out, mkBad(key, k, err.Error(), func(s *Settings) *config.Duration { return &s.SpoolMaxAge }))
						continue
					}
					out = append(out, mkLeaf(key, k, vv, d, func(s *Settings) *config.Duration { return &s.SpoolMaxAge }))
				case "overflow":
					str, ok := vv.(string)
					if !ok {
						out = append(out, mkBad(key, k, fmt.Sprintf("must be %s or %s, got %s", config.OverflowDropOldest, config.OverflowBlock, show(vv)), func(s *Settings) *string { return &s.SpoolOverflow }))
						continue
					}
					out = append(out, mkLeaf(key, k, vv, str, func(s *Settings) *string { return &s.SpoolOverflow }))
				default:
					errs[key] = "unknown key; the shadow can change spool.max_bytes, spool.max_age and spool.overflow"
				}
			}
		case "sources":
			obj, ok := object(k, v, errs)
			if !ok {
				continue
			}
			for _, name := range slices.Sorted(maps.Keys(obj)) {
				out = append(out, parseSource(base, name, obj[name], errs)...)
			}
		default:
			errs[k] = "unknown key"
		}
	}
	return out
}

// parseSource parses desired.sources.NAME.
func parseSource(base Settings, name string, v any, errs map[string]string) []leaf {
	prefix := "sources." + name
	obj, ok := object(prefix, v, errs)
	if !ok {
		return nil
	}
	if _, ok := base.Sources[name]; !ok {
		errs[prefix] = "no source of this name in agent.yaml; the shadow changes the sources agent.yaml configures"
		return nil
	}
	src := func(s *Settings) *SourceSettings { return s.Sources[name] }
	var out []leaf
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		key, vv := prefix+"."+k, obj[k]
		switch k {
		case "interval":
			d, err := duration(vv)
			if err == nil && d.D() < config.MinSourceInterval {
				err = fmt.Errorf("must be at least %s, got %s", config.MinSourceInterval, d)
			}
			if err != nil {
				out = append(out, mkBad(key, prefix, err.Error(), func(s *Settings) *config.Duration { return &src(s).Interval }))
				continue
			}
			out = append(out, mkLeaf(key, prefix, vv, d, func(s *Settings) *config.Duration { return &src(s).Interval }))
		case "enabled":
			b, ok := vv.(bool)
			if !ok {
				out = append(out, mkBad(key, prefix, fmt.Sprintf("must be true or false, got %s", show(vv)), func(s *Settings) *bool { return &src(s).Enabled }))
				continue
			}
			out = append(out, mkLeaf(key, prefix, vv, b, func(s *Settings) *bool { return &src(s).Enabled }))
		case "report":
			out = append(out, parseReport(key, prefix, vv, src, errs)...)
		default:
			errs[key] = "unknown key; the shadow can change interval, enabled and report"
		}
	}
	return out
}

// parseReport parses desired.sources.NAME.report. A strategy other than
// the one running starts from that strategy's defaults.
func parseReport(prefix, group string, v any, src func(*Settings) *SourceSettings, errs map[string]string) []leaf {
	obj, ok := object(prefix, v, errs)
	if !ok {
		return nil
	}
	rep := func(s *Settings) *config.Report { return &src(s).Report }
	var out []leaf
	// The strategy goes first: changing it resets the parameters.
	if sv, ok := obj["strategy"]; ok {
		key := prefix + ".strategy"
		str, ok := sv.(string)
		if !ok {
			out = append(out, mkBad(key, group, fmt.Sprintf("must be %s, %s or %s, got %s", config.StrategyRealtime, config.StrategyBatch, config.StrategyOnChange, show(sv)), func(s *Settings) *config.Report { return rep(s) }))
		} else {
			out = append(out, leaf{
				key: key, group: group, raw: sv,
				set: func(s *Settings) {
					r := rep(s)
					if r.Strategy != str {
						*r = config.Source{Report: config.Report{Strategy: str}}.WithDefaults().Report
					}
				},
				keep: func(dst, src *Settings) { *rep(dst) = *rep(src) },
			})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		key, vv := prefix+"."+k, obj[k]
		switch k {
		case "strategy":
		case "max_points":
			n, ok := integer(vv)
			if !ok {
				out = append(out, mkBad(key, group, fmt.Sprintf("must be a whole number, got %s", show(vv)), func(s *Settings) *int { return &rep(s).MaxPoints }))
				continue
			}
			out = append(out, mkLeaf(key, group, vv, n, func(s *Settings) *int { return &rep(s).MaxPoints }))
		case "max_delay", "max_interval":
			f := func(s *Settings) *config.Duration { return &rep(s).MaxDelay }
			if k == "max_interval" {
				f = func(s *Settings) *config.Duration { return &rep(s).MaxInterval }
			}
			d, err := duration(vv)
			if err != nil {
				out = append(out, mkBad(key, group, err.Error(), f))
				continue
			}
			out = append(out, mkLeaf(key, group, vv, d, f))
		case "deadband", "deadband_percent":
			f := func(s *Settings) *float64 { return &rep(s).Deadband }
			if k == "deadband_percent" {
				f = func(s *Settings) *float64 { return &rep(s).DeadbandPercent }
			}
			n, ok := vv.(float64)
			if !ok {
				out = append(out, mkBad(key, group, fmt.Sprintf("must be a number, got %s", show(vv)), f))
				continue
			}
			out = append(out, mkLeaf(key, group, vv, n, f))
		default:
			errs[key] = "unknown key; report takes strategy, max_points, max_delay, deadband, deadband_percent and max_interval"
		}
	}
	return out
}

func object(key string, v any, errs map[string]string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		errs[key] = fmt.Sprintf("must be an object, got %s", show(v))
	}
	return m, ok
}

func integer(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, false
	}
	return int(f), true
}

func duration(v any) (config.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("must be a duration such as \"500ms\" or \"1m\", got %s", show(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write e.g. 500ms, 30s or 2m", s)
	}
	return config.Duration(d), nil
}

func byteSize(v any) (config.ByteSize, error) {
	switch x := v.(type) {
	case string:
		return config.ParseByteSize(x)
	case float64:
		if x != math.Trunc(x) || x < 0 || x > math.MaxInt64/2 {
			return 0, fmt.Errorf("must be a whole number of bytes or a size such as \"64MiB\", got %v", x)
		}
		return config.ByteSize(x), nil
	default:
		return 0, errors.New("must be a number of bytes or a size such as \"64MiB\", got " + show(v))
	}
}

// show describes a decoded JSON value for an error message.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("%q", x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%v", x)
	}
}
