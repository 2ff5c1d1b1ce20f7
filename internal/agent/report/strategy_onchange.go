package report

import (
	"fmt"
	"math"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// MaxTrackedSensors is how many sensors one OnChange remembers. A source
// that names more (an exec script inventing names) makes it forget them
// all and report the next reading of each, rather than grow without bound.
const MaxTrackedSensors = 4096

// OnChangeOptions configures an OnChange strategy.
type OnChangeOptions struct {
	// Deadband is the absolute change a number must exceed to be
	// reported; 0 reports any change.
	Deadband float64
	// DeadbandPercent is the change a number must exceed to be reported,
	// in percent of the magnitude of the last reported value. When both
	// are set, the larger band applies: Deadband is then a floor that
	// keeps values near zero from reporting every flicker.
	DeadbandPercent float64
	// MaxInterval is the heartbeat: a reading is reported, changed or not,
	// when at least this long has passed since its sensor's last report.
	// 0 turns the heartbeat off.
	MaxInterval time.Duration
}

// OnChange passes on a reading only when it differs from the last reading
// reported for the same sensor name: a number by more than the deadband, a
// string or a boolean by any change (as does a change of value type). The
// first reading of every sensor is reported, and so is a reading taken
// MaxInterval or more after its sensor's last report, so that a flat signal
// still shows it is alive.
//
// A change exactly as large as the band is not reported; neither is one
// that exceeds it only by floating-point rounding (20.0 to 20.1 with a
// deadband of 0.1).
type OnChange struct {
	opts OnChangeOptions
	last map[string]lastReport
}

// lastReport is the last reported reading of one sensor.
type lastReport struct {
	// value is the point's value: *outpostv1.Point_Num, _Str or _Flag.
	value any
	at    time.Time
}

// NewOnChange returns an OnChange strategy; the deadbands must be finite
// and not negative, MaxInterval not negative.
func NewOnChange(opts OnChangeOptions) (*OnChange, error) {
	if !(opts.Deadband >= 0) || math.IsInf(opts.Deadband, 0) {
		return nil, fmt.Errorf("on_change: deadband must be a finite number of at least 0, got %v", opts.Deadband)
	}
	if !(opts.DeadbandPercent >= 0) || math.IsInf(opts.DeadbandPercent, 0) {
		return nil, fmt.Errorf("on_change: deadband percent must be a finite number of at least 0, got %v", opts.DeadbandPercent)
	}
	if opts.MaxInterval < 0 {
		return nil, fmt.Errorf("on_change: max interval must not be negative, got %s", opts.MaxInterval)
	}
	return &OnChange{opts: opts, last: make(map[string]lastReport)}, nil
}

// Offer returns the points that changed enough or are due for a heartbeat.
// It reuses the backing array of points for the result.
func (o *OnChange) Offer(now time.Time, points []*outpostv1.Point) []*outpostv1.Point {
	out := points[:0]
	for _, p := range points {
		l, seen := o.last[p.GetSensor()]
		due := o.opts.MaxInterval > 0 && now.Sub(l.at) >= o.opts.MaxInterval
		if seen && !due && !o.changed(l.value, p.GetValue()) {
			continue
		}
		if !seen && len(o.last) >= MaxTrackedSensors {
			clear(o.last)
		}
		o.last[p.GetSensor()] = lastReport{value: p.GetValue(), at: now}
		out = append(out, p)
	}
	clear(points[len(out):]) // let the dropped points be collected
	return out
}

// Deadline returns the zero time: OnChange holds nothing back.
func (o *OnChange) Deadline() time.Time { return time.Time{} }

// Flush returns nil: OnChange holds nothing back.
func (o *OnChange) Flush() []*outpostv1.Point { return nil }

// changed reports whether v differs enough from the last reported value.
func (o *OnChange) changed(last, v any) bool {
	switch v := v.(type) {
	case *outpostv1.Point_Num:
		l, ok := last.(*outpostv1.Point_Num)
		return !ok || o.exceeds(l.Num, v.Num)
	case *outpostv1.Point_Str:
		l, ok := last.(*outpostv1.Point_Str)
		return !ok || l.Str != v.Str
	case *outpostv1.Point_Flag:
		l, ok := last.(*outpostv1.Point_Flag)
		return !ok || l.Flag != v.Flag
	default:
		return true
	}
}

// relTolerance is the relative size of the rounding error ignored when a
// change is compared with the band: far above float64 rounding (about
// 1e-16), far below any deadband a sensor would use.
const relTolerance = 1e-12

// exceeds reports whether v differs from last by more than the band.
func (o *OnChange) exceeds(last, v float64) bool {
	d := math.Abs(v - last)
	band := max(o.opts.Deadband, o.opts.DeadbandPercent/100*math.Abs(last))
	if band == 0 {
		return d > 0
	}
	return d-band > relTolerance*max(math.Abs(v), math.Abs(last), band)
}
