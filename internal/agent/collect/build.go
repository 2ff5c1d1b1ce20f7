package collect

import (
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/report"
)

// FromConfig builds the inputs that the sources of an agent.yaml describe,
// each with its own report strategy, the defaults of config.Source filled
// in. deviceID seeds simulated sources that set no seed of their own. It
// expects sources that passed config validation, and reports every source
// it cannot build. No source opens a file, process or connection before
// its first read.
func FromConfig(deviceID string, sources []config.Source) ([]Input, error) {
	var inputs []Input
	var errs []error
	for _, s := range sources {
		s = s.WithDefaults()
		src, err := newSource(deviceID, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: %w", s.Name, err))
			continue
		}
		strategy, err := newStrategy(s.Report)
		if err != nil {
			errs = append(errs, fmt.Errorf("source %s: report: %w", s.Name, err))
			continue
		}
		inputs = append(inputs, Input{
			Name:     s.Name,
			Interval: s.Interval.D(),
			Timeout:  s.Timeout.D(),
			Source:   src,
			Strategy: strategy,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("building sources: %w", err)
	}
	return inputs, nil
}

// newSource builds the Source of s, whose defaults are filled in.
func newSource(deviceID string, s config.Source) (Source, error) {
	missing := func() error { return fmt.Errorf("type %s needs the key %s", s.Type, s.Type) }
	switch s.Type {
	case config.SourceTypeSim:
		if s.Sim == nil {
			return nil, missing()
		}
		seed := uint64(s.Sim.Seed)
		if seed == 0 {
			seed = SimSeed(deviceID, s.Name)
		}
		return NewSim(s.Sim.Kind, seed)
	case config.SourceTypeFile:
		if s.File == nil {
			return nil, missing()
		}
		return NewFile(s.File.Path, s.File.Scale, s.File.Offset)
	case config.SourceTypeExec:
		if s.Exec == nil {
			return nil, missing()
		}
		return NewExec(s.Name, s.Exec.Command, s.Exec.Format)
	case config.SourceTypeHTTP:
		if s.HTTP == nil {
			return nil, missing()
		}
		return NewHTTP(s.Name, s.HTTP.URL, s.HTTP.Headers, s.HTTP.Fields)
	case config.SourceTypeSystem:
		return NewSystem(s.Name, *s.System)
	case config.SourceTypeModbus:
		if s.Modbus == nil {
			return nil, missing()
		}
		return NewModbus(s.Name, *s.Modbus, s.Timeout.D())
	default:
		return nil, fmt.Errorf("unknown type %q", s.Type)
	}
}

// newStrategy builds the report strategy r describes.
func newStrategy(r config.Report) (report.Strategy, error) {
	switch r.Strategy {
	case config.StrategyRealtime, "":
		return report.Realtime{}, nil
	case config.StrategyBatch:
		return report.NewBatch(r.MaxPoints, r.MaxDelay.D())
	case config.StrategyOnChange:
		return report.NewOnChange(report.OnChangeOptions{
			Deadband:        r.Deadband,
			DeadbandPercent: r.DeadbandPercent,
			MaxInterval:     r.MaxInterval.D(),
		})
	default:
		return nil, fmt.Errorf("unknown strategy %q", r.Strategy)
	}
}

// StrategyFor builds a new report strategy as r (defaults filled in)
// describes, for Collector.Configure.
func StrategyFor(r config.Report) (report.Strategy, error) { return newStrategy(r) }
