package collect

import (
	"fmt"

	"github.com/outpost-edge/outpost/internal/agent/config"
)

// FromConfig builds the inputs that the sources of an agent.yaml describe.
// deviceID seeds simulated sources that set no seed of their own.
func FromConfig(deviceID string, sources []config.Source) ([]Input, error) {
	var inputs []Input
	for _, s := range sources {
		var src Source
		switch s.Type {
		case config.SourceTypeSim:
			seed := uint64(s.Sim.Seed)
			if seed == 0 {
				seed = SimSeed(deviceID, s.Name)
			}
			sim, err := NewSim(s.Sim.Kind, seed)
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", s.Name, err)
			}
			src = sim
		default:
			return nil, fmt.Errorf("source %s: unknown type %q", s.Name, s.Type)
		}
		inputs = append(inputs, Input{Name: s.Name, Interval: s.Interval.D(), Source: src})
	}
	return inputs, nil
}
