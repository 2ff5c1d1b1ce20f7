package report

import (
	"fmt"
	"slices"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

var t0 = time.UnixMilli(1764086400000)

func numPoint(sensor string, v float64) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Num{Num: v}}
}

func strPoint(sensor, v string) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Str{Str: v}}
}

func flagPoint(sensor string, v bool) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, Value: &outpostv1.Point_Flag{Flag: v}}
}

// describe renders points as "sensor=value" for comparisons.
func describe(pts []*outpostv1.Point) []string {
	var out []string
	for _, p := range pts {
		switch v := p.GetValue().(type) {
		case *outpostv1.Point_Num:
			out = append(out, fmt.Sprintf("%s=%v", p.GetSensor(), v.Num))
		case *outpostv1.Point_Str:
			out = append(out, fmt.Sprintf("%s=%q", p.GetSensor(), v.Str))
		case *outpostv1.Point_Flag:
			out = append(out, fmt.Sprintf("%s=%v", p.GetSensor(), v.Flag))
		}
	}
	return out
}

func TestRealtimePassesEverything(t *testing.T) {
	var s Strategy = Realtime{}
	in := []*outpostv1.Point{numPoint("a", 1), numPoint("a", 1)}
	if got := s.Offer(t0, in); len(got) != 2 {
		t.Errorf("Offer = %v, want both points", describe(got))
	}
	if !s.Deadline().IsZero() || s.Flush() != nil {
		t.Error("Realtime holds points")
	}
}

func TestOnChangeDeadband(t *testing.T) {
	// Each step offers one value of sensor "s" at one second after the
	// previous; want says whether it is reported.
	type step struct {
		v    float64
		want bool
	}
	tests := []struct {
		name  string
		opts  OnChangeOptions
		steps []step
	}{
		{"no band reports any change, not repeats", OnChangeOptions{},
			[]step{{1, true}, {1, false}, {1.0000001, true}, {1.0000001, false}, {0, true}}},
		{"exactly at the absolute band is not reported", OnChangeOptions{Deadband: 0.5},
			[]step{{10, true}, {10.5, false}, {9.5, false}, {10.50001, true}, {10.1, false}, {11.1, true}}},
		{"rounding at the band is not a change", OnChangeOptions{Deadband: 0.1},
			[]step{{20.0, true}, {20.1, false}, {19.9, false}, {20.2, true}, {20.3, false}}},
		{"band is measured from the last reported value, not the last read", OnChangeOptions{Deadband: 1},
			[]step{{0, true}, {0.6, false}, {0.9, false}, {1.2, true}}},
		{"negative values", OnChangeOptions{Deadband: 2},
			[]step{{-10, true}, {-12, false}, {-8, false}, {-12.5, true}, {-14.5, false}, {-14.6, true}}},
		{"crossing zero", OnChangeOptions{Deadband: 1},
			[]step{{-0.4, true}, {0.5, false}, {0.7, true}}},
		{"percent of the last reported value", OnChangeOptions{DeadbandPercent: 10},
			[]step{{100, true}, {110, false}, {90, false}, {111, true}, {122.1, false}, {122.2, true}}},
		{"percent of a negative value uses its magnitude", OnChangeOptions{DeadbandPercent: 10},
			[]step{{-50, true}, {-55, false}, {-45, false}, {-56, true}}},
		{"percent of zero reports any change", OnChangeOptions{DeadbandPercent: 50},
			[]step{{0, true}, {0, false}, {0.001, true}, {0.0015, false}, {0.0016, true}}},
		{"absolute band is a floor for percent near zero", OnChangeOptions{Deadband: 0.5, DeadbandPercent: 10},
			[]step{{0, true}, {0.5, false}, {0.6, true}, {1000.6, true}, {1100, false}, {1100.7, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewOnChange(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				got := s.Offer(t0.Add(time.Duration(i)*time.Second), []*outpostv1.Point{numPoint("s", st.v)})
				if reported := len(got) == 1; reported != st.want {
					t.Errorf("step %d: value %v reported = %v, want %v", i, st.v, reported, st.want)
				}
			}
		})
	}
}

func TestOnChangeKeepsSensorsApart(t *testing.T) {
	s, err := NewOnChange(OnChangeOptions{Deadband: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := describe(s.Offer(t0, []*outpostv1.Point{numPoint("a", 1), numPoint("b", 1), strPoint("c", "on"), flagPoint("d", true)}))
	if want := []string{"a=1", "b=1", `c="on"`, "d=true"}; !slices.Equal(got, want) {
		t.Fatalf("first offer = %v, want %v", got, want)
	}
	got = describe(s.Offer(t0.Add(time.Second), []*outpostv1.Point{
		numPoint("a", 1.5), numPoint("b", 2.5), strPoint("c", "on"), flagPoint("d", false),
	}))
	if want := []string{"b=2.5", "d=false"}; !slices.Equal(got, want) {
		t.Errorf("second offer = %v, want %v", got, want)
	}
	got = describe(s.Offer(t0.Add(2*time.Second), []*outpostv1.Point{
		strPoint("c", "off"), strPoint("a", "1.5"), flagPoint("d", false), numPoint("d", 0),
	}))
	// A string replacing a number is a change whatever the band; "d" is
	// offered twice in one read: the flag is unchanged, the number is new.
	if want := []string{`c="off"`, `a="1.5"`, "d=0"}; !slices.Equal(got, want) {
		t.Errorf("third offer = %v, want %v", got, want)
	}
}

func TestOnChangeHeartbeat(t *testing.T) {
	s, err := NewOnChange(OnChangeOptions{Deadband: 5, MaxInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// clock is a fake clock advanced by hand; a read happens every 3s.
	clock := t0
	var reportedAt []time.Duration
	offer := func(v float64) {
		// "other" keeps its own heartbeat and does not affect "flat".
		for _, p := range s.Offer(clock, []*outpostv1.Point{numPoint("other", 0), numPoint("flat", v)}) {
			if p.GetSensor() == "flat" {
				reportedAt = append(reportedAt, clock.Sub(t0))
			}
		}
	}
	for range 9 { // t = 0, 3, …, 24s; flat values.
		offer(1)
		clock = clock.Add(3 * time.Second)
	}
	// 0 (first), 12 (≥10s after 0), 24 (≥10s after 12).
	want := []time.Duration{0, 12 * time.Second, 24 * time.Second}
	if !slices.Equal(reportedAt, want) {
		t.Fatalf("flat signal reported at %v, want %v", reportedAt, want)
	}
	// A change resets the heartbeat; exactly max_interval later reports.
	clock = t0.Add(30 * time.Second)
	offer(10) // changed: reported at 30s
	clock = t0.Add(39 * time.Second)
	offer(10) // 9s later: quiet
	clock = t0.Add(40 * time.Second)
	offer(10) // exactly 10s: heartbeat
	want = append(want, 30*time.Second, 40*time.Second)
	if !slices.Equal(reportedAt, want) {
		t.Errorf("reported at %v, want %v", reportedAt, want)
	}

	noBeat, _ := NewOnChange(OnChangeOptions{})
	for i := range 100 {
		if got := noBeat.Offer(t0.Add(time.Duration(i)*time.Hour), []*outpostv1.Point{numPoint("x", 1)}); len(got) != 0 && i > 0 {
			t.Fatalf("without a heartbeat, unchanged value reported after %d hours", i)
		}
	}
}

func TestOnChangeForgetsTooManySensors(t *testing.T) {
	s, _ := NewOnChange(OnChangeOptions{})
	for i := range MaxTrackedSensors + 10 {
		s.Offer(t0, []*outpostv1.Point{numPoint(fmt.Sprint("s", i), 1)})
	}
	if len(s.last) > MaxTrackedSensors {
		t.Errorf("tracks %d sensors, want at most %d", len(s.last), MaxTrackedSensors)
	}
}

func TestNewOnChangeRejectsBadOptions(t *testing.T) {
	for _, o := range []OnChangeOptions{{Deadband: -1}, {DeadbandPercent: -0.1}, {MaxInterval: -time.Second}} {
		if _, err := NewOnChange(o); err == nil {
			t.Errorf("NewOnChange(%+v) = nil error", o)
		}
	}
}

func TestBatch(t *testing.T) {
	b, err := NewBatch(3, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pts := func(vs ...float64) []*outpostv1.Point {
		var out []*outpostv1.Point
		for _, v := range vs {
			out = append(out, numPoint("b", v))
		}
		return out
	}

	// By size: the third point completes the batch.
	if got := b.Offer(t0, pts(1)); got != nil {
		t.Fatalf("first Offer = %v, want nothing yet", describe(got))
	}
	if want := t0.Add(5 * time.Second); !b.Deadline().Equal(want) {
		t.Errorf("Deadline = %v, want %v", b.Deadline(), want)
	}
	if got := b.Offer(t0.Add(time.Second), pts(2)); got != nil {
		t.Fatalf("second Offer = %v, want nothing yet", describe(got))
	}
	if got := describe(b.Offer(t0.Add(2*time.Second), pts(3))); !slices.Equal(got, []string{"b=1", "b=2", "b=3"}) {
		t.Fatalf("third Offer = %v, want the batch of three", got)
	}
	if !b.Deadline().IsZero() || b.Flush() != nil {
		t.Error("batch still holds points after passing them on")
	}

	// A read of more points than max_points passes them all on at once.
	if got := b.Offer(t0, pts(1, 2, 3, 4)); len(got) != 4 {
		t.Errorf("Offer of 4 = %d points, want 4", len(got))
	}

	// By delay: the deadline is counted from the first held point; an
	// empty offer (a failed read) at the deadline passes the batch on.
	b.Offer(t0.Add(10*time.Second), pts(5))
	b.Offer(t0.Add(12*time.Second), pts(6))
	if want := t0.Add(15 * time.Second); !b.Deadline().Equal(want) {
		t.Errorf("Deadline = %v, want %v", b.Deadline(), want)
	}
	if got := b.Offer(t0.Add(14*time.Second), nil); got != nil {
		t.Errorf("empty Offer before the deadline = %v", describe(got))
	}
	if got := describe(b.Offer(t0.Add(15*time.Second), nil)); !slices.Equal(got, []string{"b=5", "b=6"}) {
		t.Errorf("empty Offer at the deadline = %v, want b=5 b=6", got)
	}

	// Flush (at the timer or at shutdown) passes on what is held.
	b.Offer(t0.Add(20*time.Second), pts(7))
	if got := describe(b.Flush()); !slices.Equal(got, []string{"b=7"}) {
		t.Errorf("Flush = %v, want b=7", got)
	}
	if got := b.Flush(); got != nil {
		t.Errorf("second Flush = %v, want nothing", describe(got))
	}
}

func TestNewBatchRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		n int
		d time.Duration
	}{{0, time.Second}, {5001, time.Second}, {10, 0}} {
		if _, err := NewBatch(tt.n, tt.d); err == nil {
			t.Errorf("NewBatch(%d, %s) = nil error", tt.n, tt.d)
		}
	}
}
