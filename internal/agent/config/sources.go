package config

import (
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/protocol"
)

// Source configures one sensor.
type Source struct {
	// Name is the sensor name its points carry (key sources[].name): 1 to
	// 128 of A-Z a-z 0-9 - _ . : / and unique within the agent.
	Name string `yaml:"name"`
	// Type is the kind of source (key sources[].type). Only "sim", a
	// simulated sensor, exists so far.
	Type string `yaml:"type"`
	// Interval is how often the source is read (key sources[].interval),
	// at least 10ms. Default 1s.
	Interval Duration `yaml:"interval"`
	// Sim configures a source of type sim (key sources[].sim).
	Sim *Sim `yaml:"sim,omitempty"`
}

// Sim configures a simulated sensor.
type Sim struct {
	// Kind is what is simulated (key sources[].sim.kind): "temperature"
	// (°C, about 20 to 25 with slow drift), "humidity" (%, 30 to 70) or
	// "vibration" (mm/s RMS, mostly below 1 with occasional spikes).
	Kind string `yaml:"kind"`
	// Seed makes the simulated values repeatable (key sources[].sim.seed).
	// 0, the default, derives a seed from the device id and sensor name, so
	// different devices produce different but stable series.
	Seed int64 `yaml:"seed,omitempty"`
}

// The source types and simulated kinds Validate accepts.
const (
	SourceTypeSim = "sim"

	SimTemperature = "temperature"
	SimHumidity    = "humidity"
	SimVibration   = "vibration"
)

// MinSourceInterval is the shortest interval a source may be read at.
const MinSourceInterval = 10 * time.Millisecond

// DefaultSources returns the sources an agent reads when its configuration
// names none: simulated temperature, humidity and vibration every second.
func DefaultSources() []Source {
	var out []Source
	for _, k := range []string{SimTemperature, SimHumidity, SimVibration} {
		out = append(out, Source{Name: k, Type: SourceTypeSim, Interval: Duration(time.Second), Sim: &Sim{Kind: k}})
	}
	return out
}

// validateSources reports every problem of the sources list, each naming its key.
func validateSources(sources []Source) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := make(map[string]bool, len(sources))
	for i, s := range sources {
		key := fmt.Sprintf("sources[%d]", i)
		if err := protocol.ValidSensorName(s.Name); err != nil {
			add("%s.name: %w", key, err)
		} else if seen[s.Name] {
			add("%s.name: %q is used by another source", key, s.Name)
		}
		seen[s.Name] = true
		if s.Interval.D() < MinSourceInterval {
			add("%s.interval: must be at least %s, got %s", key, MinSourceInterval, s.Interval)
		}
		switch s.Type {
		case SourceTypeSim:
			if s.Sim == nil {
				add("%s.sim: missing; a sim source needs e.g. sim: {kind: temperature}", key)
				break
			}
			switch s.Sim.Kind {
			case SimTemperature, SimHumidity, SimVibration:
			default:
				add("%s.sim.kind: must be %s, %s or %s, got %q", key, SimTemperature, SimHumidity, SimVibration, s.Sim.Kind)
			}
		case "":
			add("%s.type: missing; the only type so far is %q", key, SourceTypeSim)
		default:
			add("%s.type: unknown type %q; the only type so far is %q", key, s.Type, SourceTypeSim)
		}
	}
	return errs
}
