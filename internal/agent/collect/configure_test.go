package collect

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/report"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func TestConfigureChangesInputsWhileRunning(t *testing.T) {
	var reads atomic.Int64
	src := sourceFunc(func(context.Context, time.Time) ([]*outpostv1.Point, error) {
		reads.Add(1)
		return []*outpostv1.Point{num(1)}, nil
	})
	// Starts disabled, with an interval so long that only Configure can
	// make it read more than once.
	sink := &recordingSink{}
	c, err := New([]Input{{Name: "s", Interval: time.Hour, Source: src, Disabled: true}}, sink, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure("nope", Settings{Interval: time.Second}); !errors.Is(err, ErrUnknownInput) {
		t.Errorf("Configure(unknown) = %v, want ErrUnknownInput", err)
	}
	if err := c.Configure("s", Settings{Interval: -time.Second}); err == nil {
		t.Error("Configure with a negative interval succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	time.Sleep(50 * time.Millisecond) // a disabled input must stay idle; nothing to poll for
	if n := reads.Load(); n != 0 {
		t.Fatalf("a disabled input was read %d times", n)
	}
	if err := c.Configure("s", Settings{Interval: 5 * time.Millisecond, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := reads.Load(); n < 10 {
			return fmt.Errorf("%d reads", n)
		}
		return nil
	})

	// A new strategy: batches of 5 points per append.
	b, err := report.NewBatch(5, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure("s", Settings{Interval: 5 * time.Millisecond, Enabled: true, Strategy: b}); err != nil {
		t.Fatal(err)
	}
	before := len(sink.sizesBySensor()["s"])
	testutil.Eventually(t, 5*time.Second, func() error {
		sizes := sink.sizesBySensor()["s"][before:]
		if len(sizes) < 3 {
			return fmt.Errorf("appends since: %v", sizes)
		}
		for _, n := range sizes[len(sizes)-2:] {
			if n != 5 {
				return fmt.Errorf("append sizes %v, want batches of 5", sizes)
			}
		}
		return nil
	})

	// Disabled again: the held points go out and reading stops.
	if err := c.Configure("s", Settings{Interval: 5 * time.Millisecond, Enabled: false}); err != nil {
		t.Fatal(err)
	}
	var stopped int64
	testutil.Eventually(t, 5*time.Second, func() error {
		n := reads.Load()
		if n != stopped {
			stopped = n
			return fmt.Errorf("still reading")
		}
		return nil
	})
	if got, _ := c.Settings("s"); got.Enabled || got.Interval != 5*time.Millisecond {
		t.Errorf("Settings = %+v", got)
	}
}
