package sim

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Latency summarizes the shadow round trips: from just before the desired
// state is set through the REST API to the moment the device sees the
// hub accept the report carrying the same value. It spans the API call,
// the store, the delta over MQTT, the device's report and its acceptance.
type Latency struct {
	Probes int `json:"probes"`
	OK     int `json:"ok"`
	// Failed round trips timed out or their API call failed.
	Failed int           `json:"failed"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
	Mean   time.Duration `json:"mean_ns"`
	// FirstError is the first failure's reason.
	FirstError string `json:"first_error,omitempty"`
}

// summarize computes the percentiles (nearest rank) of the successful
// round trips.
func summarize(probes int, rtts []time.Duration, firstErr error) Latency {
	l := Latency{Probes: probes, OK: len(rtts), Failed: probes - len(rtts)}
	if firstErr != nil {
		l.FirstError = firstErr.Error()
	}
	if len(rtts) == 0 {
		return l
	}
	slices.Sort(rtts)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(rtts))+0.999999) - 1
		return rtts[min(max(i, 0), len(rtts)-1)]
	}
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	l.P50, l.P90, l.P99, l.Max = rank(0.50), rank(0.90), rank(0.99), rtts[len(rtts)-1]
	l.Mean = sum / time.Duration(len(rtts))
	return l
}

// probe measures Probes shadow round trips, ProbeConcurrency at a time.
// Worker w probes the ready devices w, w+C, w+2C, … in turn, so no device
// has two probes in flight.
func (f *fleet) probe(ctx context.Context) Latency {
	var ready []*device
	for _, d := range f.devices {
		select {
		case <-d.ready:
			ready = append(ready, d)
		default:
		}
	}
	workers := min(f.o.ProbeConcurrency, len(ready))
	// A hub that answers no round trip would otherwise keep the run
	// going for Probes × ProbeTimeout / workers.
	giveUpAfter := int64(max(20, 5*workers))
	ctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	var (
		failedInARow atomic.Int64
		next         atomic.Int64
		mu           sync.Mutex
		rtts         = make([]time.Duration, 0, f.o.Probes)
		firstErr     error
		wg           sync.WaitGroup
	)
	stopProgress := f.progressEvery(time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("shadow round trips: %d/%d done", next.Load(), f.o.Probes)
	})
	for w := range workers {
		wg.Go(func() {
			for k := 0; ; k++ {
				i := next.Add(1)
				if i > int64(f.o.Probes) || ctx.Err() != nil {
					return
				}
				d := ready[(w+k*workers)%len(ready)]
				rtt, err := f.roundTrip(ctx, d, fmt.Sprintf("p-%s-%d", f.runID, i))
				mu.Lock()
				if err == nil {
					rtts = append(rtts, rtt)
				} else if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", d.id, err)
				}
				mu.Unlock()
				if err == nil {
					failedInARow.Store(0)
				} else if n := failedInARow.Add(1); n == giveUpAfter {
					giveUp(fmt.Errorf("stopped probing after %d round trips in a row failed", n))
				}
			}
		})
	}
	wg.Wait()
	stopProgress()
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled && firstErr != nil {
		firstErr = fmt.Errorf("%w; %w", firstErr, cause)
	}
	l := summarize(f.o.Probes, rtts, firstErr)
	fmt.Fprintf(f.o.Progress, "shadow round trips: %d ok, %d failed\n", l.OK, l.Failed)
	return l
}

// roundTrip sets desired sim.probe=token on d and waits for d's report of
// it to be accepted.
func (f *fleet) roundTrip(ctx context.Context, d *device, token string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.ProbeTimeout)
	defer cancel()
	done := d.expect(token)
	defer d.forget(token)
	start := time.Now()
	if err := f.hub.PatchDesired(ctx, d.id, map[string]any{"sim": map[string]any{"probe": token}}); err != nil {
		return 0, err
	}
	select {
	case <-done:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("no accepted report within %s", f.o.ProbeTimeout)
	}
}
