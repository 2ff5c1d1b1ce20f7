package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a simulated clock: After advances it by d at once and
// records the wait, so a rollout runs instantly and deterministically.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1764086400, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// fakeDevice is a simulated device of fakeAPI.
type fakeDevice struct {
	labels map[string]string
	// polls is how many reads of its shadow after a patch it takes the
	// device to report the desired values; -1 never.
	polls    int
	seen     int
	desired  map[string]any
	reported map[string]any
	patched  time.Time
}

// fakeAPI is an in-memory hub. It is used from the rollout's goroutine only.
type fakeAPI struct {
	clock   *fakeClock
	devices map[string]*fakeDevice
	order   []string // devices in the order they were patched
	listErr error
}

func newFakeAPI(clock *fakeClock) *fakeAPI {
	return &fakeAPI{clock: clock, devices: map[string]*fakeDevice{}}
}

func (f *fakeAPI) add(id string, polls int, labels ...string) {
	lm := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		lm[k] = v
	}
	f.devices[id] = &fakeDevice{labels: lm, polls: polls, reported: map[string]any{}}
}

func (f *fakeAPI) Devices(_ context.Context, sel map[string]string) ([]string, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	var ids []string
next:
	for id, d := range f.devices {
		for k, v := range sel {
			if d.labels[k] != v {
				continue next
			}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *fakeAPI) PatchDesired(_ context.Context, id string, frag map[string]any) (map[string]any, error) {
	d, ok := f.devices[id]
	if !ok {
		return nil, errors.New("not_found")
	}
	f.order = append(f.order, id)
	d.desired, d.seen, d.patched = frag, 0, f.clock.Now()
	f.step(d)
	return d.reported, nil
}

func (f *fakeAPI) Reported(_ context.Context, id string) (map[string]any, error) {
	d := f.devices[id]
	d.seen++
	f.step(d)
	return d.reported, nil
}

// step makes d report its desired values once it has been read polls times.
func (f *fakeAPI) step(d *fakeDevice) {
	if d.polls >= 0 && d.seen >= d.polls {
		d.reported = d.desired
	}
}

func devicesN(f *fakeAPI, n int, labels ...string) {
	for i := 1; i <= n; i++ {
		f.add(fmt.Sprintf("d%02d", i), 1, labels...)
	}
}

var frag = map[string]any{"sources": map[string]any{"temperature": map[string]any{"interval": "200ms"}}}

func TestBatchSize(t *testing.T) {
	tests := []struct {
		spec string
		n    int
		want int
	}{
		{"10%", 20, 2},
		{"10%", 15, 2}, // 1.5 rounds up
		{"10%", 30, 3}, // no floating-point overshoot to 4
		{"10%", 1, 1},
		{"1%", 5, 1},
		{"33.3%", 3, 1},
		{"50%", 5, 3},
		{"100%", 7, 7},
		{"10%", 0, 0},
		{"3", 10, 3},
		{"3", 2, 2},
		{"1", 1, 1},
		{" 4 ", 9, 4},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s of %d", tc.spec, tc.n), func(t *testing.T) {
			b, err := ParseBatchSize(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Of(tc.n); got != tc.want {
				t.Errorf("Of(%d) = %d, want %d", tc.n, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "0", "-1", "0%", "101%", "-5%", "x", "%", "1.5", "10 %%"} {
		if _, err := ParseBatchSize(bad); err == nil {
			t.Errorf("ParseBatchSize(%q) accepted", bad)
		}
	}
	if s := (BatchSize{Percent: 12.5}).String(); s != "12.5%" {
		t.Errorf("String = %q", s)
	}
}

func TestRolloutInBatchesWithPause(t *testing.T) {
	clock := newFakeClock()
	api := newFakeAPI(clock)
	devicesN(api, 5, "site=plant-1")
	api.add("other", 1, "site=plant-2")
	var started [][]string
	var progress []BatchResult
	r := &Rollout{API: api, Selector: map[string]string{"site": "plant-1"}, Desired: frag,
		Batch: BatchSize{Percent: 40}, Pause: 30 * time.Second, Timeout: time.Minute, PollInterval: time.Second,
		Clock: clock, OnStart: func(b [][]string) { started = b }, OnBatch: func(b BatchResult) { progress = append(progress, b) }}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantBatches := [][]string{{"d01", "d02"}, {"d03", "d04"}, {"d05"}}
	if !reflect.DeepEqual(started, wantBatches) {
		t.Errorf("batches = %v, want %v", started, wantBatches)
	}
	if want := []string{"d01", "d02", "d03", "d04", "d05"}; !reflect.DeepEqual(api.order, want) {
		t.Errorf("patched %v, want %v", api.order, want)
	}
	if len(progress) != 3 || progress[2].Index != 3 || progress[2].Of != 3 || len(progress[1].Converged) != 2 {
		t.Errorf("progress = %+v", progress)
	}
	for _, b := range progress {
		if b.Elapsed != time.Second { // one poll interval each
			t.Errorf("batch %d took %s, want 1s", b.Index, b.Elapsed)
		}
	}
	// The pause lies between batches: d03 is patched 1s (batch 1) + 30s
	// after d01, and there is no pause after the last batch.
	if gap := api.devices["d03"].patched.Sub(api.devices["d01"].patched); gap != 31*time.Second {
		t.Errorf("batch 2 started %s after batch 1, want 31s", gap)
	}
	want := []time.Duration{time.Second, 30 * time.Second, time.Second, 30 * time.Second, time.Second}
	if !reflect.DeepEqual(clock.waits, want) {
		t.Errorf("waits = %v, want %v", clock.waits, want)
	}
	if res.Status != StatusConverged || res.Devices != 5 || res.BatchSize != 2 || len(res.Converged) != 5 ||
		len(res.Failed) != 0 || len(res.NotStarted) != 0 || res.ElapsedMS != 63000 {
		t.Errorf("result = %+v", res)
	}
	if api.devices["other"].desired != nil {
		t.Error("a device outside the selector was changed")
	}
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("result does not encode: %v", err)
	}
}

func TestRolloutOneDevice(t *testing.T) {
	clock := newFakeClock()
	api := newFakeAPI(clock)
	api.add("solo", 0, "site=x") // already reports on the patch
	r := &Rollout{API: api, Selector: map[string]string{"site": "x"}, Desired: frag,
		Batch: BatchSize{Percent: 10}, Pause: time.Hour, Clock: clock}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.BatchSize != 1 || len(res.Batches) != 1 || len(clock.waits) != 0 {
		t.Errorf("result %+v, waits %v; want one batch, no waiting", res, clock.waits)
	}
}

func TestRolloutStopsAtBatchThatDoesNotConverge(t *testing.T) {
	clock := newFakeClock()
	api := newFakeAPI(clock)
	devicesN(api, 7)
	api.devices["d04"].polls = -1
	api.devices["d03"].polls = 3
	var progress []BatchResult
	r := &Rollout{API: api, Desired: frag, Batch: BatchSize{Count: 2}, Pause: time.Second,
		Timeout: 10 * time.Second, PollInterval: 3 * time.Second, Clock: clock,
		OnBatch: func(b BatchResult) { progress = append(progress, b) }}
	res, err := r.Run(context.Background())
	var nc *NotConvergedError
	if !errors.As(err, &nc) || !errors.Is(err, ErrNotConverged) {
		t.Fatalf("err = %v, want a *NotConvergedError", err)
	}
	if nc.Batch != 2 || nc.Batches != 4 || len(nc.Failed) != 1 || nc.Failed[0].Device != "d04" || nc.NotStarted != 3 {
		t.Errorf("error = %+v", nc)
	}
	msg := err.Error()
	for _, want := range []string{"batch 2 of 4", "within 10s", "d04", `sources.temperature.interval: not reported, want "200ms"`, "3 device(s) in later batches left unchanged"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if want := []string{"d01", "d02", "d03", "d04"}; !reflect.DeepEqual(api.order, want) {
		t.Errorf("patched %v, want only %v", api.order, want)
	}
	if len(progress) != 2 || !reflect.DeepEqual(progress[1].Converged, []string{"d03"}) || progress[1].Elapsed != 10*time.Second {
		t.Errorf("progress = %+v", progress)
	}
	// The last wait is cut to the deadline: 3s+3s+3s+1s.
	if w := clock.waits[len(clock.waits)-4:]; !reflect.DeepEqual(w, []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second, time.Second}) {
		t.Errorf("waits of batch 2 = %v", w)
	}
	if res.Status != StatusFailed || !reflect.DeepEqual(res.NotStarted, []string{"d05", "d06", "d07"}) ||
		len(res.Converged) != 3 || res.Error != msg {
		t.Errorf("result = %+v", res)
	}
}

func TestRolloutLastBatchFails(t *testing.T) {
	clock := newFakeClock()
	api := newFakeAPI(clock)
	devicesN(api, 5)
	api.devices["d05"].polls = -1
	res, err := (&Rollout{API: api, Desired: frag, Batch: BatchSize{Count: 2}, Clock: clock}).Run(context.Background())
	var nc *NotConvergedError
	if !errors.As(err, &nc) || nc.Batch != 3 || nc.NotStarted != 0 || nc.Failed[0].Device != "d05" {
		t.Fatalf("err = %v", err)
	}
	if len(res.Converged) != 4 || len(res.NotStarted) != 0 || res.Batches[2].Elapsed != DefaultTimeout {
		t.Errorf("result = %+v", res)
	}
}

func TestRolloutErrors(t *testing.T) {
	t.Run("no devices match", func(t *testing.T) {
		api := newFakeAPI(newFakeClock())
		api.add("d01", 0, "site=a")
		r := &Rollout{API: api, Selector: map[string]string{"site": "b"}, Desired: frag, Clock: api.clock}
		res, err := r.Run(context.Background())
		if !errors.Is(err, ErrNoDevices) || res.Status != StatusFailed || len(api.order) != 0 {
			t.Errorf("err = %v, result %+v", err, res)
		}
	})
	t.Run("listing fails", func(t *testing.T) {
		api := newFakeAPI(newFakeClock())
		api.listErr = errors.New("hub down")
		_, err := (&Rollout{API: api, Desired: frag, Clock: api.clock}).Run(context.Background())
		if err == nil || err.Error() != "listing devices: hub down" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("patch fails", func(t *testing.T) {
		api := newFakeAPI(newFakeClock())
		devicesN(api, 3)
		ghost := &ghostAPI{fakeAPI: api, ghost: "d02"}
		_, err := (&Rollout{API: ghost, Desired: frag, Batch: BatchSize{Count: 2}, Clock: api.clock}).Run(context.Background())
		var nc *NotConvergedError
		if !errors.As(err, &nc) || len(nc.Failed) != 1 || nc.Failed[0].Device != "d02" ||
			!strings.Contains(nc.Failed[0].Reason, "changing desired state: not_found") {
			t.Errorf("err = %v", err)
		}
	})
}

// ghostAPI is a fakeAPI that lists a device the hub then does not know.
type ghostAPI struct {
	*fakeAPI
	ghost string
}

func (g *ghostAPI) PatchDesired(ctx context.Context, id string, frag map[string]any) (map[string]any, error) {
	if id == g.ghost {
		return nil, errors.New("not_found")
	}
	return g.fakeAPI.PatchDesired(ctx, id, frag)
}

// TestRolloutCancel runs on the real clock: a canceled context must cut a
// long pause or a long wait short.
func TestRolloutCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		polls int
	}{{"during the pause", 0}, {"while waiting for a batch", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			api := newFakeAPI(newFakeClock())
			api.add("d01", tc.polls)
			api.add("d02", tc.polls)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := &Rollout{API: api, Desired: frag, Batch: BatchSize{Count: 1}, Pause: time.Hour, Timeout: time.Hour,
				PollInterval: 10 * time.Millisecond}
			if tc.polls < 0 {
				r.OnStart = func([][]string) { time.AfterFunc(50*time.Millisecond, cancel) }
			} else {
				r.OnBatch = func(BatchResult) { cancel() }
			}
			start := time.Now()
			res, err := r.Run(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Run took %s after cancel", d)
			}
			if res.Status != StatusCanceled || !reflect.DeepEqual(res.NotStarted, []string{"d02"}) {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

func TestPending(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		name     string
		desired  map[string]any
		reported map[string]any
		want     string
	}{
		{"equal", frag, frag, ""},
		{"numbers by value", map[string]any{"a": num("1")}, map[string]any{"a": num("1.0")}, ""},
		{"float and json.Number", map[string]any{"a": 0.5}, map[string]any{"a": num("0.50")}, ""},
		{"extra reported keys", map[string]any{"a": true}, map[string]any{"a": true, "b": 2}, ""},
		{"null asks nothing", map[string]any{"a": nil, "b": map[string]any{}}, map[string]any{"a": 1}, ""},
		{"arrays as a whole", map[string]any{"a": []any{num("1"), "x"}}, map[string]any{"a": []any{1.0, "x"}}, ""},
		{"missing", map[string]any{"a": map[string]any{"b": "x"}}, map[string]any{}, `a.b: not reported, want "x"`},
		{"differs", map[string]any{"a": "x", "b": "y"}, map[string]any{"a": "z"}, `a: reported "z", want "x", and 1 other key`},
		{"three differ", map[string]any{"a": "x", "b": "y", "c": "z"}, map[string]any{}, `a: not reported, want "x", and 2 other keys`},
		{"type differs", map[string]any{"a": num("1")}, map[string]any{"a": "1"}, `a: reported "1", want 1`},
		{"array differs", map[string]any{"a": []any{1.0}}, map[string]any{"a": []any{1.0, 2.0}}, `a: reported [1,2], want [1]`},
		{"object in the way", map[string]any{"a": map[string]any{"b": 1.0}}, map[string]any{"a": 5.0}, `a.b: not reported, want 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pending(leaves(nil, tc.desired, nil), tc.reported); got != tc.want {
				t.Errorf("pending = %q, want %q", got, tc.want)
			}
		})
	}
}
