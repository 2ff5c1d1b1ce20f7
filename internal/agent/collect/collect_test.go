package collect

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sourceFunc func(ctx context.Context, now time.Time) ([]*outpostv1.Point, error)

func (f sourceFunc) Collect(ctx context.Context, now time.Time) ([]*outpostv1.Point, error) {
	return f(ctx, now)
}

func num(v float64) *outpostv1.Point { return &outpostv1.Point{Value: &outpostv1.Point_Num{Num: v}} }

func TestCollectorIsolatesFailingSources(t *testing.T) {
	var calls atomic.Int64
	sources := []Input{
		{Name: "good", Interval: time.Millisecond, Source: sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
			return []*outpostv1.Point{num(1)}, nil
		})},
		// flaky panics on its first two reads, then returns an error once, then works.
		{Name: "flaky", Interval: time.Millisecond, Source: sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
			switch calls.Add(1) {
			case 1, 2:
				panic("sensor bus wedged")
			case 3:
				return nil, errors.New("i2c timeout")
			}
			return []*outpostv1.Point{num(2)}, nil
		})},
		// multi names its own points and produces one invalid point per read.
		{Name: "multi", Interval: time.Millisecond, Source: sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
			a, b := num(3), num(math.NaN())
			a.Sensor, b.Sensor = "multi/a", "multi/b"
			return []*outpostv1.Point{a, b}, nil
		})},
	}
	sink := &recordingSink{}
	start := time.UnixMilli(1764086400000)
	c, err := New(sources, sink, Options{PanicBackoff: time.Millisecond, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	seen := map[string]int{}
	count := func() error {
		clear(seen)
		for _, p := range sink.all() {
			seen[p.GetSensor()]++
			if p.GetTsUnixMs() != start.UnixMilli() {
				return fmt.Errorf("point %v has no timestamp", p)
			}
		}
		return nil
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if err := count(); err != nil {
			return err
		}
		if seen["good"] < 3 || seen["flaky"] < 3 || seen["multi/a"] < 3 {
			return fmt.Errorf("points so far: %v", seen)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := count(); err != nil {
		t.Fatal(err)
	}
	if seen["multi/b"] != 0 || seen["multi"] != 0 {
		t.Errorf("invalid or misnamed points were sent: %v", seen)
	}
	st := c.Stats()
	if st.Panics != 2 || st.Errors != 1 || st.Invalid == 0 || st.Points < 9 {
		t.Errorf("stats = %+v, want 2 panics, 1 error, some invalid and at least 9 points", st)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

func TestNewRejectsBadInputs(t *testing.T) {
	_, err := New([]Input{{Name: "bad name", Interval: 0}}, nil, Options{})
	if err == nil {
		t.Fatal("New = nil error")
	}
	for _, want := range []string{"bad_name", "interval must be positive", "no source", "no sink"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// recordingSink keeps every appended point and the size of every Append.
type recordingSink struct {
	mu     sync.Mutex
	points []*outpostv1.Point
	// calls holds the sensor of the first point and the size of each Append.
	calls []appendCall
}

type appendCall struct {
	sensor string
	n      int
}

func (r *recordingSink) Append(_ context.Context, pts []*outpostv1.Point) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points = append(r.points, pts...)
	r.calls = append(r.calls, appendCall{pts[0].GetSensor(), len(pts)})
	return nil
}

func (r *recordingSink) all() []*outpostv1.Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*outpostv1.Point(nil), r.points...)
}

// callsBySensor counts the Append calls per sensor of their first point.
func (r *recordingSink) callsBySensor() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, c := range r.calls {
		out[c.sensor]++
	}
	return out
}

// sizesBySensor lists the sizes of the Append calls per sensor of their first point.
func (r *recordingSink) sizesBySensor() map[string][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]int{}
	for _, c := range r.calls {
		out[c.sensor] = append(out[c.sensor], c.n)
	}
	return out
}

// describePoints renders points as "sensor=value" for comparisons.
func describePoints(pts []*outpostv1.Point) []string {
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

// collectWithin reads s once with a deadline and describes the points.
func collectWithin(t *testing.T, s Source, timeout time.Duration) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pts, err := s.Collect(ctx, time.Now())
	return describePoints(pts), err
}

// TestRunWithoutSourcesWaits: an agent without sources still runs (for
// its shadow and its jobs); Run must not return before it is stopped,
// since the agent stops its uplink when Run returns.
func TestRunWithoutSourcesWaits(t *testing.T) {
	c, err := New(nil, &recordingSink{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run without sources returned at once: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
