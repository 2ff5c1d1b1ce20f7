package collect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/report"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// runCollector runs c until the returned stop is called; stop waits for Run.
func runCollector(t *testing.T, c *Collector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestPoolCapsConcurrentReads(t *testing.T) {
	const limit, sources = 3, 12
	var running, peak, reads atomic.Int64
	var inputs []Input
	for i := range sources {
		inputs = append(inputs, Input{
			Name: fmt.Sprint("s", i), Interval: time.Millisecond, Timeout: time.Millisecond,
			Source: sourceFunc(func(ctx context.Context, _ time.Time) ([]*outpostv1.Point, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				reads.Add(1)
				<-ctx.Done() // hold the slot for the whole timeout
				return []*outpostv1.Point{num(1)}, nil
			}),
		})
	}
	c, err := New(inputs, &recordingSink{}, Options{MaxConcurrentPolls: limit})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	testutil.Eventually(t, 5*time.Second, func() error {
		if reads.Load() < 5*sources || peak.Load() < limit {
			return fmt.Errorf("%d reads, peak concurrency %d", reads.Load(), peak.Load())
		}
		return nil
	})
	stop()
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency = %d, want %d", p, limit)
	}
	if c.Stats().PollWaits == 0 {
		t.Error("no read waited for the pool")
	}
}

func TestSlowSourceDoesNotStallOthers(t *testing.T) {
	var hungReads atomic.Int64
	inputs := []Input{
		// hung ignores nothing but never answers before its deadline; its
		// timeout is 1h, capped at its 30ms interval.
		{Name: "hung", Interval: 30 * time.Millisecond, Timeout: time.Hour, Source: sourceFunc(func(ctx context.Context, _ time.Time) ([]*outpostv1.Point, error) {
			hungReads.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		})},
		{Name: "fast", Interval: time.Millisecond, Source: sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
			return []*outpostv1.Point{num(1)}, nil
		})},
	}
	sink := &recordingSink{}
	// One slot for both: the hung source holds it for 30ms at a time.
	c, err := New(inputs, sink, Options{MaxConcurrentPolls: 1})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	testutil.Eventually(t, 5*time.Second, func() error {
		if n, h := len(sink.all()), hungReads.Load(); n < 20 || h < 3 {
			return fmt.Errorf("%d points from fast, %d reads of hung", n, h)
		}
		return nil
	})
	stop()
	if st := c.Stats(); st.Errors < 2 {
		t.Errorf("stats = %+v, want the hung source's timeouts counted as errors", st)
	}
}

func TestCollectorAppliesStrategies(t *testing.T) {
	var v atomic.Int64
	counter := sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
		return []*outpostv1.Point{num(float64(v.Add(1)))}, nil
	})
	flat := sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
		return []*outpostv1.Point{num(7)}, nil
	})
	bySize, _ := report.NewBatch(5, time.Hour)
	byDelay, _ := report.NewBatch(5000, 20*time.Millisecond)
	held, _ := report.NewBatch(5000, time.Hour)
	onChange, _ := report.NewOnChange(report.OnChangeOptions{})
	inputs := []Input{
		{Name: "by_size", Interval: time.Millisecond, Source: counter, Strategy: bySize},
		{Name: "by_delay", Interval: time.Millisecond, Source: flat, Strategy: byDelay},
		{Name: "held", Interval: time.Millisecond, Source: flat, Strategy: held},
		{Name: "on_change", Interval: time.Millisecond, Source: flat, Strategy: onChange},
		{Name: "realtime", Interval: time.Millisecond, Source: flat},
	}
	sink := &recordingSink{}
	c, err := New(inputs, sink, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	testutil.Eventually(t, 5*time.Second, func() error {
		calls := sink.callsBySensor()
		if calls["by_size"] < 2 || calls["by_delay"] < 2 || calls["realtime"] < 10 {
			return fmt.Errorf("append calls so far: %v", calls)
		}
		return nil
	})
	stop()
	sizes := sink.sizesBySensor()
	// The last batch by size may be a partial one, flushed at shutdown.
	for i, n := range sizes["by_size"] {
		if n != 5 && (i < len(sizes["by_size"])-1 || n > 5) {
			t.Errorf("batch by size appended %v points at once, want 5 each but the last", sizes["by_size"])
			break
		}
	}
	for _, n := range sizes["realtime"] {
		if n != 1 {
			t.Errorf("realtime appended %v points at once, want 1 each", sizes["realtime"])
			break
		}
	}
	if got := sizes["on_change"]; len(got) != 1 || got[0] != 1 {
		t.Errorf("on_change of a flat signal appended %v, want one point once", got)
	}
	// held never reached its size or delay: its points are appended once,
	// when the collector stops.
	if got := sizes["held"]; len(got) != 1 || got[0] < 2 {
		t.Errorf("held batch appended %v, want all its points once at shutdown", got)
	}
	if st := c.Stats(); st.Points != uint64(len(sink.all())) {
		t.Errorf("stats count %d points, the sink has %d", st.Points, len(sink.all()))
	}
}

func TestCollectorFlushSurvivesCancelledSink(t *testing.T) {
	// The final flush uses a context of its own: a sink that refuses a
	// cancelled context, as a spool would, still gets the held points.
	held, _ := report.NewBatch(5000, time.Hour)
	var reads atomic.Int64
	sink := &ctxCheckingSink{}
	c, err := New([]Input{{Name: "held", Interval: time.Millisecond, Source: sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
		reads.Add(1)
		return []*outpostv1.Point{num(1)}, nil
	}), Strategy: held}}, sink, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	testutil.Eventually(t, 5*time.Second, func() error {
		if reads.Load() < 3 {
			return errors.New("not read yet")
		}
		return nil
	})
	stop()
	if got, want := sink.points.Load(), reads.Load(); got != want {
		t.Errorf("%d points appended at shutdown, want all %d read", got, want)
	}
}

func TestCollectorClosesSources(t *testing.T) {
	src := &closingSource{}
	c, err := New([]Input{{Name: "c", Interval: time.Millisecond, Source: src}}, &recordingSink{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	testutil.Eventually(t, 5*time.Second, func() error {
		if src.reads.Load() < 2 {
			return errors.New("not read yet")
		}
		return nil
	})
	stop()
	if n := src.closes.Load(); n != 1 {
		t.Errorf("Close called %d times, want 1", n)
	}
}

type closingSource struct{ reads, closes atomic.Int64 }

func (s *closingSource) Collect(context.Context, time.Time) ([]*outpostv1.Point, error) {
	if s.closes.Load() > 0 {
		panic("Collect after Close")
	}
	s.reads.Add(1)
	return []*outpostv1.Point{num(1)}, nil
}

func (s *closingSource) Close() error { s.closes.Add(1); return nil }

// ctxCheckingSink refuses appends with a done context, as a spool would.
type ctxCheckingSink struct{ points atomic.Int64 }

func (s *ctxCheckingSink) Append(ctx context.Context, pts []*outpostv1.Point) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.points.Add(int64(len(pts)))
	return nil
}
