package rollouts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

// memStore is an in-memory Store.
type memStore struct {
	mu sync.Mutex
	m  map[string]Rollout
}

func (s *memStore) CreateRollout(_ context.Context, r Rollout) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[r.ID]; ok {
		return ErrExists
	}
	s.m[r.ID] = r
	return nil
}

func (s *memStore) SaveRollout(_ context.Context, r Rollout) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = r
	return nil
}

func (s *memStore) Rollout(_ context.Context, id string) (Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[id]
	if !ok {
		return Rollout{}, ErrNotFound
	}
	return r, nil
}

func (s *memStore) RunningRollouts(ctx context.Context) ([]Rollout, error) {
	all, _ := s.Rollouts(ctx)
	var out []Rollout
	for _, r := range all {
		if r.Status == Running {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *memStore) Rollouts(context.Context) ([]Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Rollout
	for _, r := range s.m {
		out = append(out, r)
	}
	return out, nil
}

// fakeJobs keeps executions; tests move them with finish.
type fakeJobs struct {
	mu       sync.Mutex
	jobs     map[string]JobSpec
	execs    map[string]map[string]string // job → device → status
	canceled []string
}

func newFakeJobs() *fakeJobs {
	return &fakeJobs{jobs: map[string]JobSpec{}, execs: map[string]map[string]string{}}
}

func (f *fakeJobs) CreateJob(_ context.Context, spec JobSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.jobs[spec.ID]; ok {
		return ErrJobExists
	}
	f.jobs[spec.ID] = spec
	f.execs[spec.ID] = map[string]string{}
	for _, d := range spec.Devices {
		f.execs[spec.ID][d] = ExecQueued
	}
	return nil
}

func (f *fakeJobs) CancelJob(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.canceled = append(f.canceled, id)
	for d, st := range f.execs[id] {
		if st == ExecQueued || st == ExecInProgress {
			f.execs[id][d] = ExecCanceled
		}
	}
	return nil
}

func (f *fakeJobs) Executions(_ context.Context, id string) ([]Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Execution
	for d, st := range f.execs[id] {
		out = append(out, Execution{Device: d, Status: st})
	}
	return out, nil
}

// finish ends every queued execution of job with outcome(device).
func (f *fakeJobs) finish(job string, outcome func(device string) string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for d, st := range f.execs[job] {
		if st == ExecQueued {
			f.execs[job][d] = outcome(d)
		}
	}
}

func (f *fakeJobs) created() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

type fakeDevices []string

func (f fakeDevices) MatchingIDs(_ context.Context, sel map[string]string) ([]string, error) {
	if sel["site"] == "nowhere" {
		return nil, nil
	}
	return slices.Clone(f), nil
}

type fakeArtifacts struct{}

func (fakeArtifacts) ArtifactType(name, version string) (string, error) {
	if name == "outpost-agent" && version == "1.4.0" {
		return "agent", nil
	}
	return "", errors.New("not published")
}

type fixture struct {
	svc   *Service
	store *memStore
	jobs  *fakeJobs
	clock time.Time
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	var ids fakeDevices
	for i := range n {
		ids = append(ids, fmt.Sprintf("dev-%02d", i))
	}
	f := &fixture{store: &memStore{m: map[string]Rollout{}}, jobs: newFakeJobs(), clock: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	f.svc = f.newService(ids)
	return f
}

func (f *fixture) newService(ids fakeDevices) *Service {
	s := NewService(f.store, f.jobs, ids, fakeArtifacts{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.now = func() time.Time { return f.clock }
	return s
}

func (f *fixture) step(t *testing.T) {
	t.Helper()
	if err := f.svc.Step(context.Background()); err != nil {
		t.Fatalf("Step: %v", err)
	}
}

func (f *fixture) get(t *testing.T, id string) Rollout {
	t.Helper()
	r, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func spec(id string) Spec {
	return Spec{ID: id, Artifact: Artifact{Name: "outpost-agent", Version: "1.4.0"}, Waves: []string{"5%", "50%", "100%"},
		SuccessThreshold: 0.95, Soak: time.Minute}
}

func succeed(string) string { return ExecSucceeded }

func TestRolloutRunsWavesWithSoak(t *testing.T) {
	f := newFixture(t, 20)
	r, err := f.svc.Create(context.Background(), spec("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Bounds) != "[1 10 20]" || r.Artifact.Type != "agent" {
		t.Fatalf("bounds %v, type %q; want [1 10 20] and agent", r.Bounds, r.Artifact.Type)
	}
	if got := f.jobs.created(); fmt.Sprint(got) != "[r1-w1]" {
		t.Fatalf("jobs after create = %v, want the first wave only", got)
	}
	if doc := string(f.jobs.jobs["r1-w1"].Document); !strings.Contains(doc, `"name":"outpost-agent"`) || !strings.Contains(doc, `"type":"agent"`) {
		t.Errorf("job document %s", doc)
	}

	f.jobs.finish("r1-w1", succeed)
	f.step(t)
	if got := f.jobs.created(); len(got) != 1 {
		t.Fatalf("wave 2 started before the soak: %v", got)
	}
	f.clock = f.clock.Add(time.Minute)
	f.step(t)
	if got := f.jobs.created(); fmt.Sprint(got) != "[r1-w1 r1-w2]" || len(f.jobs.jobs["r1-w2"].Devices) != 9 {
		t.Fatalf("after the soak: jobs %v", got)
	}
	f.jobs.finish("r1-w2", succeed)
	f.step(t)
	f.clock = f.clock.Add(time.Minute)
	f.step(t)
	f.jobs.finish("r1-w3", succeed)
	f.step(t)
	if r := f.get(t, "r1"); r.Status != Running {
		t.Fatalf("completed before the last soak: %s", r.Status)
	}
	f.clock = f.clock.Add(time.Minute)
	f.step(t)
	r = f.get(t, "r1")
	if r.Status != Completed || !strings.Contains(r.Reason, "all 3 waves done: 20 devices") {
		t.Errorf("rollout %s (%s), want completed", r.Status, r.Reason)
	}
	// Every device got exactly one job.
	seen := map[string]int{}
	for _, j := range f.jobs.jobs {
		for _, d := range j.Devices {
			seen[d]++
		}
	}
	if len(seen) != 20 {
		t.Errorf("%d devices got a job, want 20", len(seen))
	}
	for d, n := range seen {
		if n != 1 {
			t.Errorf("%s got %d jobs", d, n)
		}
	}
}

// TestRolloutPausesWhenAThirdFail: a third of the devices fail; the rollout
// pauses in wave 2 and says why; abort cancels what has not run.
func TestRolloutPausesWhenAThirdFail(t *testing.T) {
	f := newFixture(t, 21)
	ctx := context.Background()
	sp := spec("r2")
	sp.Soak = 0
	r, err := f.svc.Create(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{}
	for i, d := range r.Devices {
		if i > 0 && i%3 == 0 { // a third, none in wave 1
			bad[d] = true
		}
	}
	outcome := func(d string) string {
		if bad[d] {
			return ExecFailed
		}
		return ExecSucceeded
	}
	f.jobs.finish("r2-w1", outcome)
	f.step(t)
	// Wave 2 (devices 1..10): 3 fail and one times out while 2 still run.
	f.jobs.mu.Lock()
	w2 := f.jobs.execs["r2-w2"]
	running := 0
	for d := range w2 {
		switch {
		case bad[d]:
			w2[d] = ExecFailed
		case running < 2:
			running++ // left QUEUED
		default:
			w2[d] = ExecSucceeded
		}
	}
	f.jobs.mu.Unlock()
	f.step(t)
	r = f.get(t, "r2")
	if r.Status != Paused || r.Wave != 1 || !strings.Contains(r.Reason, "wave 2: 3 of 9 devices failed (FAILED 3); 9 must succeed for the 95% success threshold") {
		t.Fatalf("rollout %s at wave %d: %q; want paused in wave 2 with the count", r.Status, r.Wave+1, r.Reason)
	}
	f.step(t) // a paused rollout does not move
	if got := f.jobs.created(); fmt.Sprint(got) != "[r2-w1 r2-w2]" {
		t.Errorf("jobs %v; want no wave 3", got)
	}

	r, err = f.svc.Abort(ctx, "r2", "bad build")
	if err != nil || r.Status != Aborted || r.Reason != "aborted by operator: bad build" {
		t.Fatalf("Abort = %+v, %v", r.Status, err)
	}
	execs, _ := f.jobs.Executions(ctx, "r2-w2")
	canceled := 0
	for _, e := range execs {
		if e.Status == ExecCanceled {
			canceled++
		}
	}
	if canceled != 2 {
		t.Errorf("%d executions canceled, want the 2 that had not run", canceled)
	}
	if _, err := f.svc.Resume(ctx, "r2"); !errors.Is(err, ErrFinal) {
		t.Errorf("Resume after abort = %v, want ErrFinal", err)
	}
}

func TestRolloutResumeAcceptsFailuresAndTimeoutsCount(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	sp := spec("r3")
	sp.Waves, sp.Soak, sp.SuccessThreshold = []string{"50%", "100%"}, 0, 1
	r, err := f.svc.Create(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	first := r.WaveDevices(0)[0]
	f.jobs.finish("r3-w1", func(d string) string {
		if d == first {
			return ExecTimedOut // an offline device
		}
		return ExecSucceeded
	})
	f.step(t)
	if r = f.get(t, "r3"); r.Status != Paused || !strings.Contains(r.Reason, "TIMED_OUT 1") {
		t.Fatalf("rollout %s: %q; want paused for the timed-out device", r.Status, r.Reason)
	}
	if _, err := f.svc.Resume(ctx, "r3"); err != nil {
		t.Fatal(err)
	}
	f.jobs.finish("r3-w2", succeed)
	f.step(t)
	if r = f.get(t, "r3"); r.Status != Completed {
		t.Errorf("after resume: %s (%s)", r.Status, r.Reason)
	}
}

// TestRolloutSurvivesRestart: a new service over the same store and jobs
// (a hub restart) goes on where the old one was, without duplicate jobs.
func TestRolloutSurvivesRestart(t *testing.T) {
	f := newFixture(t, 10)
	sp := spec("r4")
	sp.Soak = 0
	if _, err := f.svc.Create(context.Background(), sp); err != nil {
		t.Fatal(err)
	}
	f.jobs.finish("r4-w1", succeed)
	// The wave's state was saved before the job was created: simulate a
	// crash in between by forgetting WaveStarted.
	r := f.get(t, "r4")
	f.step(t)
	r = f.get(t, "r4")
	r.WaveStarted = false
	if err := f.store.SaveRollout(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var ids fakeDevices
	for i := range 10 {
		ids = append(ids, fmt.Sprintf("dev-%02d", i))
	}
	f.svc = f.newService(ids)
	f.step(t)
	f.jobs.finish("r4-w2", succeed)
	f.step(t)
	f.jobs.finish("r4-w3", succeed)
	f.step(t)
	if r = f.get(t, "r4"); r.Status != Completed || len(r.Devices) != 10 {
		t.Errorf("after restart: %s with %d devices", r.Status, len(r.Devices))
	}
	if got := f.jobs.created(); fmt.Sprint(got) != "[r4-w1 r4-w2 r4-w3]" {
		t.Errorf("jobs %v", got)
	}
}

func TestCreateErrors(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	bad := spec("no spaces allowed")
	bad.SuccessThreshold, bad.Waves = 1.5, []string{"0%"}
	if _, err := f.svc.Create(ctx, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "rollout id") ||
		!strings.Contains(err.Error(), "success threshold") || !strings.Contains(err.Error(), "waves") {
		t.Errorf("bad spec: %v", err)
	}
	unknown := spec("r5")
	unknown.Artifact.Version = "9.9.9"
	if _, err := f.svc.Create(ctx, unknown); !errors.Is(err, ErrNotArtifact) {
		t.Errorf("unknown artifact: %v", err)
	}
	none := spec("r6")
	none.Selector = map[string]string{"site": "nowhere"}
	if _, err := f.svc.Create(ctx, none); !errors.Is(err, ErrNoDevices) {
		t.Errorf("no devices: %v", err)
	}
	if _, err := f.svc.Create(ctx, spec("r7")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, spec("r7")); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate id: %v", err)
	}
}

func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		waves []string
		n     int
		want  string
	}{
		{DefaultWaves, 1000, "[10 100 500 1000]"},
		{DefaultWaves, 20, "[1 2 10 20]"},
		{DefaultWaves, 3, "[1 2 3]"}, // empty waves are skipped
		{[]string{"1", "5", "50%"}, 10, "[1 5 10]"},
		{[]string{"100%"}, 7, "[7]"},
	} {
		if got := fmt.Sprint(bounds(tc.waves, tc.n)); got != tc.want {
			t.Errorf("bounds(%v, %d) = %s, want %s", tc.waves, tc.n, got, tc.want)
		}
	}
}

// TestDocumentStoreRoundTrip runs a rollout over the SQLite document store
// and a fresh service on the same file (a hub restart).
func TestDocumentStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outpost.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	jobs := newFakeJobs()
	clock := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	svc := NewService(NewDocumentStore(st), jobs, fakeDevices{"a", "b", "c", "d"}, fakeArtifacts{}, slog.New(slog.DiscardHandler))
	svc.now = func() time.Time { return clock }
	sp := spec("r8")
	sp.Waves, sp.Soak = []string{"50%", "100%"}, 0
	if _, err := svc.Create(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(t.Context(), sp); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	jobs.finish("r8-w1", succeed)
	st.Close()

	st, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc = NewService(NewDocumentStore(st), jobs, fakeDevices{}, fakeArtifacts{}, slog.New(slog.DiscardHandler))
	svc.now = func() time.Time { return clock }
	if err := svc.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	jobs.finish("r8-w2", succeed)
	if err := svc.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, err := svc.Get(t.Context(), "r8")
	if err != nil || r.Status != Completed || len(r.Devices) != 4 || r.Soak != 0 || r.SuccessThreshold != 0.95 {
		t.Errorf("after restart: %+v, %v", r, err)
	}
	if _, err := svc.Get(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
	list, err := svc.List(t.Context())
	if err != nil || len(list) != 1 {
		t.Errorf("List = %d rollouts, %v", len(list), err)
	}
}

// TestRolloutSkipsDeletedDevices: devices deleted after the rollout was
// created get no job and do not count against the threshold.
func TestRolloutSkipsDeletedDevices(t *testing.T) {
	f := newFixture(t, 6)
	sp := spec("r9")
	sp.Waves, sp.Soak, sp.SuccessThreshold = []string{"1", "100%"}, 0, 1
	r, err := f.svc.Create(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{r.Devices[1]: true, r.Devices[2]: true}
	var left fakeDevices
	for _, d := range r.Devices {
		if !gone[d] {
			left = append(left, d)
		}
	}
	f.svc = f.newService(left)
	f.jobs.finish("r9-w1", succeed)
	f.step(t)
	if n := len(f.jobs.jobs["r9-w2"].Devices); n != 3 {
		t.Fatalf("wave 2 job for %d devices, want the 3 left", n)
	}
	f.jobs.finish("r9-w2", succeed)
	f.step(t)
	r = f.get(t, "r9")
	if r.Status != Completed {
		t.Errorf("rollout %s (%s), want completed", r.Status, r.Reason)
	}
	waves, err := f.svc.Waves(context.Background(), r)
	if err != nil || waves[1].Counts.Removed != 2 || waves[1].Counts.Succeeded != 3 {
		t.Errorf("wave 2 counts %+v, %v; want 2 removed, 3 succeeded", waves[1].Counts, err)
	}
}

func TestCreateRefusesHugeWaves(t *testing.T) {
	f := newFixture(t, MaxWaveDevices+2)
	sp := spec("r10")
	sp.Waves = []string{"1", "100%"}
	if _, err := f.svc.Create(context.Background(), sp); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "add waves") {
		t.Errorf("a wave of %d devices: %v", MaxWaveDevices+1, err)
	}
}
