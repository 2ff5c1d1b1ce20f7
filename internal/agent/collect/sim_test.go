package collect

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestSimRanges(t *testing.T) {
	start := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		kind             string
		lo, hi           float64
		meanLo, meanHi   float64
		minSpread        float64 // max-min over three hours
		maxShareAbove    float64 // share of readings above the threshold
		threshold        float64
		minCountAboveThr int
	}{
		{SimTemperature, TemperatureMin, TemperatureMax, 21.5, 23.5, 2, 1, 0, 0},
		{SimHumidity, HumidityMin, HumidityMax, 44, 56, 15, 1, 0, 0},
		// Vibration is mostly quiet with a few spikes above 2 mm/s.
		{SimVibration, VibrationMin, VibrationMax, 0.3, 0.8, 2, 0.05, 2, 20},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			s, err := NewSim(tt.kind, 7)
			if err != nil {
				t.Fatal(err)
			}
			const n = 3 * 3600
			lo, hi, sum, above := math.Inf(1), math.Inf(-1), 0.0, 0
			for i := range n {
				v := s.Value(start.Add(time.Duration(i) * time.Second))
				if v < tt.lo || v > tt.hi || math.IsNaN(v) {
					t.Fatalf("reading %d = %v, outside [%v, %v]", i, v, tt.lo, tt.hi)
				}
				lo, hi, sum = math.Min(lo, v), math.Max(hi, v), sum+v
				if tt.threshold > 0 && v > tt.threshold {
					above++
				}
			}
			if mean := sum / n; mean < tt.meanLo || mean > tt.meanHi {
				t.Errorf("mean = %.2f, want between %v and %v", mean, tt.meanLo, tt.meanHi)
			}
			if hi-lo < tt.minSpread {
				t.Errorf("spread = %.2f (%.2f..%.2f), want at least %v: the drift is missing", hi-lo, lo, hi, tt.minSpread)
			}
			if tt.threshold > 0 {
				if above < tt.minCountAboveThr || float64(above)/n > tt.maxShareAbove {
					t.Errorf("%d of %d readings above %v, want at least %d and at most %.0f%%", above, n, tt.threshold, tt.minCountAboveThr, 100*tt.maxShareAbove)
				}
			}
		})
	}
}

func TestSimIsDeterministic(t *testing.T) {
	a, _ := NewSim(SimTemperature, SimSeed("pump-7", "temperature"))
	b, _ := NewSim(SimTemperature, SimSeed("pump-7", "temperature"))
	c, _ := NewSim(SimTemperature, SimSeed("pump-8", "temperature"))
	start := time.Unix(1764086400, 0)
	same, differ := true, false
	for i := range 100 {
		now := start.Add(time.Duration(i) * time.Second)
		va, vb, vc := a.Value(now), b.Value(now), c.Value(now)
		same = same && va == vb
		differ = differ || va != vc
	}
	if !same {
		t.Error("two sims with the same seed produced different series")
	}
	if !differ {
		t.Error("sims of different devices produced the same series")
	}
}

func TestSimCollect(t *testing.T) {
	s, _ := NewSim(SimHumidity, 1)
	now := time.UnixMilli(1764086400123)
	pts, err := s.Collect(context.Background(), now)
	if err != nil || len(pts) != 1 {
		t.Fatalf("Collect = %v, %v; want one point", pts, err)
	}
	if pts[0].GetTsUnixMs() != now.UnixMilli() || pts[0].GetSensor() != "" {
		t.Errorf("point = %v, want ts %d and no sensor name", pts[0], now.UnixMilli())
	}
	if _, err := NewSim("pressure", 1); err == nil {
		t.Error("NewSim(pressure) = nil error")
	}
}
