package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
	"github.com/prometheus/client_golang/prometheus"
	ptu "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore records commits; while gate is non-nil the first commit waits
// for it, so that later batches pile up behind it.
type fakeStore struct {
	mu      sync.Mutex
	commits [][]store.Point
	fail    error
	gate    chan struct{}
	entered chan struct{}
}

func (f *fakeStore) InsertPoints(_ context.Context, pts []store.Point, _ time.Time) (int, error) {
	f.mu.Lock()
	gate := f.gate
	f.gate = nil
	f.mu.Unlock()
	if gate != nil {
		close(f.entered)
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	f.commits = append(f.commits, append([]store.Point(nil), pts...))
	return len(pts), nil
}

func payload(t *testing.T, seq uint64) []byte {
	t.Helper()
	b, err := protocol.EncodeTelemetry(&outpostv1.TelemetryBatch{SeqFirst: seq, Points: []*outpostv1.Point{
		{Sensor: "t", TsUnixMs: time.Now().UnixMilli(), Value: &outpostv1.Point_Num{Num: float64(seq)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newService(t *testing.T, st Store) (*Service, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, reg, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestGroupCommit(t *testing.T) {
	gate := make(chan struct{})
	st := &fakeStore{gate: gate, entered: make(chan struct{})}
	s, _, stop := newService(t, st)
	defer stop()

	first := make(chan error, 1)
	go func() { _, err := s.Handle(context.Background(), "d", payload(t, 1), ""); first <- err }()
	<-st.entered // the first commit is in progress and held

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(seq uint64) {
			defer wg.Done()
			_, err := s.Handle(context.Background(), "d", payload(t, seq), "")
			errs <- err
		}(uint64(i + 2))
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(s.reqs) < n {
			return errors.New("batches not queued yet")
		}
		return nil
	})
	close(gate)
	if err := <-first; err != nil {
		t.Fatalf("first batch: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("queued batch: %v", err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.commits) != 2 {
		t.Fatalf("%d commits, want 2 (the held one, then one for all %d queued batches)", len(st.commits), n)
	}
	if len(st.commits[1]) != n {
		t.Errorf("second commit has %d points, want %d", len(st.commits[1]), n)
	}
}

func TestStoreFailureReachesEveryWaiter(t *testing.T) {
	boom := errors.New("disk full")
	st := &fakeStore{fail: boom}
	s, reg, stop := newService(t, st)
	defer stop()
	_, err := s.Handle(context.Background(), "d", payload(t, 1), "")
	if !errors.Is(err, boom) || protocol.CodeOf(err) != "" {
		t.Fatalf("Handle = %v, want the store error without a protocol code", err)
	}
	if got := ptu.ToFloat64(s.batches.WithLabelValues("failed")); got != 1 {
		t.Errorf("failed batches = %v, want 1", got)
	}
	if problems, err := promlint.NewWithMetricFamilies(gather(t, reg)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func TestRejectedPayloadIsCountedNotStored(t *testing.T) {
	st := &fakeStore{}
	s, _, stop := newService(t, st)
	defer stop()
	_, err := s.Handle(context.Background(), "d", []byte("{not json"), "")
	if protocol.CodeOf(err) != protocol.CodeMalformed {
		t.Fatalf("Handle = %v, want %s", err, protocol.CodeMalformed)
	}
	if got := ptu.ToFloat64(s.rejected.WithLabelValues(string(protocol.CodeMalformed))); got != 1 {
		t.Errorf("rejected{malformed_payload} = %v, want 1", got)
	}
	if len(st.commits) != 0 {
		t.Errorf("a rejected payload reached the store")
	}
}

func TestHandleAfterStopFails(t *testing.T) {
	s, _, stop := newService(t, &fakeStore{})
	stop()
	if _, err := s.Handle(context.Background(), "d", payload(t, 1), ""); !errors.Is(err, ErrStopped) {
		t.Fatalf("Handle after stop = %v, want ErrStopped", err)
	}
}

// recorder is a Publisher that keeps copies of what it was given.
type recorder struct {
	mu     sync.Mutex
	groups [][]store.Point
}

func (r *recorder) Publish(pts []store.Point) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groups = append(r.groups, append([]store.Point(nil), pts...))
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.groups)
}

func TestPublishesCommittedBatches(t *testing.T) {
	tests := []struct {
		name      string
		fail      error
		published int
	}{
		{"committed", nil, 1},
		{"store failed", errors.New("disk full"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s := NewService(&fakeStore{fail: tt.fail}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			s.SetPublisher(rec)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			_, err := s.Handle(context.Background(), "d", payload(t, 7), "")
			if (err == nil) != (tt.fail == nil) {
				t.Fatalf("Handle = %v", err)
			}
			// The writer publishes before it answers Handle.
			if got := rec.count(); got != tt.published {
				t.Fatalf("%d groups published, want %d", got, tt.published)
			}
			if tt.published > 0 {
				if p := rec.groups[0][0]; p.DeviceID != "d" || p.Seq != 7 {
					t.Errorf("published %+v, want device d seq 7", p)
				}
			}
		})
	}
}
