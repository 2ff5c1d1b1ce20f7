package collect

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// The kinds of simulated sensor NewSim accepts.
const (
	SimTemperature = "temperature"
	SimHumidity    = "humidity"
	SimVibration   = "vibration"
)

// The ranges simulated values stay within.
const (
	TemperatureMin, TemperatureMax = 20.0, 25.0 // °C
	HumidityMin, HumidityMax       = 30.0, 70.0 // % relative humidity
	VibrationMin, VibrationMax     = 0.0, 12.0  // mm/s RMS
)

// Sim is a simulated sensor with realistic behaviour: a slow drift made of
// two sine waves (periods of minutes), gaussian noise and, for vibration,
// occasional spikes. Its output depends only on the seed and the times it
// is read at, so tests and demos are repeatable.
type Sim struct {
	kind string
	rng  *rand.Rand
	// slow and fast are the drift periods; phase1 and phase2 their phases.
	slow, fast     float64
	phase1, phase2 float64
}

var _ Source = (*Sim)(nil)

// SimSeed derives a stable seed from a device id and a sensor name, so each
// simulated device produces its own series, the same on every run.
func SimSeed(deviceID, sensor string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(deviceID))
	h.Write([]byte{0})
	h.Write([]byte(sensor))
	return h.Sum64()
}

// NewSim returns a simulated sensor of the given kind (SimTemperature,
// SimHumidity or SimVibration) whose noise comes from seed.
func NewSim(kind string, seed uint64) (*Sim, error) {
	switch kind {
	case SimTemperature, SimHumidity, SimVibration:
	default:
		return nil, fmt.Errorf("unknown simulated sensor kind %q", kind)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &Sim{
		kind:   kind,
		rng:    rng,
		slow:   480 + 240*rng.Float64(), // 8 to 12 minutes
		fast:   50 + 40*rng.Float64(),   // 50 to 90 seconds
		phase1: 2 * math.Pi * rng.Float64(),
		phase2: 2 * math.Pi * rng.Float64(),
	}, nil
}

// Collect returns one unnamed reading taken at now.
func (s *Sim) Collect(_ context.Context, now time.Time) ([]*outpostv1.Point, error) {
	return []*outpostv1.Point{{TsUnixMs: now.UnixMilli(), Value: &outpostv1.Point_Num{Num: s.Value(now)}}}, nil
}

// Value returns the reading at now, rounded to what a real sensor resolves.
func (s *Sim) Value(now time.Time) float64 {
	t := float64(now.UnixNano()) / 1e9
	d1 := math.Sin(2*math.Pi*t/s.slow + s.phase1)
	d2 := math.Sin(2*math.Pi*t/s.fast + s.phase2)
	switch s.kind {
	case SimTemperature:
		v := 22.5 + 1.6*d1 + 0.4*d2 + 0.15*s.rng.NormFloat64()
		return round(clamp(v, TemperatureMin, TemperatureMax), 2)
	case SimHumidity:
		v := 50 + 12*d1 + 3*d2 + 0.8*s.rng.NormFloat64()
		return round(clamp(v, HumidityMin, HumidityMax), 1)
	default: // SimVibration
		v := 0.45 + 0.1*d1 + math.Abs(0.05*s.rng.NormFloat64())
		if s.rng.Float64() < 0.02 { // a knock, a passing truck, a worn bearing
			v += 3 + 5*s.rng.Float64()
		}
		return round(clamp(v, VibrationMin, VibrationMax), 3)
	}
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
