package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeShadows keeps each device's workloads shadow: the hub's patches in
// order, and reports the test sets.
type fakeShadows struct {
	mu       sync.Mutex
	patches  map[string][]string                             // device → patches
	desired  map[string]map[string]*protocol.WorkloadDesired // device → service → desired (nil: removed)
	reported map[string]map[string]protocol.WorkloadReport   // device → service → report
	gets     map[string]int                                  // device → Get calls
	fail     map[string]bool                                 // devices whose patches fail
}

func newFakeShadows() *fakeShadows {
	return &fakeShadows{
		patches: map[string][]string{}, desired: map[string]map[string]*protocol.WorkloadDesired{},
		reported: map[string]map[string]protocol.WorkloadReport{}, gets: map[string]int{}, fail: map[string]bool{},
	}
}

func (f *fakeShadows) PatchDesired(_ context.Context, id, name string, patch []byte, version *int64) (protocol.ShadowDocument, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != protocol.WorkloadsShadow || version != nil {
		return protocol.ShadowDocument{}, fmt.Errorf("patch of shadow %q version %v; want %q, no version", name, version, protocol.WorkloadsShadow)
	}
	if f.fail[id] {
		return protocol.ShadowDocument{}, errors.New("store unavailable")
	}
	var p map[string]map[string]*protocol.WorkloadDesired
	if err := json.Unmarshal(patch, &p); err != nil || len(p) != 1 || p[protocol.WorkloadsKey] == nil {
		return protocol.ShadowDocument{}, fmt.Errorf("patch %s is not {workloads:{…}}: %v", patch, err)
	}
	f.patches[id] = append(f.patches[id], string(patch))
	if f.desired[id] == nil {
		f.desired[id] = map[string]*protocol.WorkloadDesired{}
	}
	maps.Copy(f.desired[id], p[protocol.WorkloadsKey])
	return protocol.ShadowDocument{}, nil
}

func (f *fakeShadows) Get(_ context.Context, id, name string) (protocol.ShadowDocument, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[id]++
	if f.desired[id] == nil && f.reported[id] == nil {
		return protocol.ShadowDocument{}, fmt.Errorf("device %s: %w", id, shadow.ErrNotFound)
	}
	// Through JSON, as the real shadow holds it.
	b, _ := json.Marshal(map[string]any{"reported": map[string]any{protocol.WorkloadsKey: f.reported[id]}})
	var st map[string]any
	_ = json.Unmarshal(b, &st)
	return protocol.ShadowDocument{State: st}, nil
}

// rev returns the revision desired for service web on a device: "" if
// none was ever written, "null" after a removal.
func (f *fakeShadows) rev(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.desired[id]["web"]
	switch {
	case !ok:
		return ""
	case w == nil:
		return "null"
	}
	return w.Revision
}

func (f *fakeShadows) patchCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.patches[id])
}

func (f *fakeShadows) report(id string, r protocol.WorkloadReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reported[id] == nil {
		f.reported[id] = map[string]protocol.WorkloadReport{}
	}
	f.reported[id]["web"] = r
}

// healthy makes devices report revision rev of web running and healthy.
func (f *fakeShadows) healthy(rev string, ids ...string) {
	for _, id := range ids {
		f.report(id, protocol.WorkloadReport{Revision: rev, Version: "1.0.0", State: "running", Healthy: true})
	}
}

func (f *fakeShadows) resetGets() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gets
	f.gets = map[string]int{}
	return g
}

// fakeDevices is a mutable device list.
type fakeDevices struct {
	mu sync.Mutex
	m  map[string]Device
}

func (f *fakeDevices) All(context.Context) ([]Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Device
	for _, d := range f.m {
		out = append(out, Device{ID: d.ID, Labels: maps.Clone(d.Labels), Online: d.Online})
	}
	return out, nil
}

func (f *fakeDevices) Get(_ context.Context, id string) (Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.m[id]
	if !ok {
		return Device{}, fmt.Errorf("%w: %s", ErrDeviceNotFound, id)
	}
	return d, nil
}

func (f *fakeDevices) set(id string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[id] = Device{ID: id, Labels: labels, Online: true}
}

func (f *fakeDevices) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
}

type fakeArtifacts struct{}

func (fakeArtifacts) ArtifactType(name, version string) (string, error) {
	switch name + "@" + version {
	case "web@1.0.0", "web@2.0.0":
		return "service", nil
	case "tool@1.0.0":
		return "file", nil
	}
	return "", errors.New("no such artifact in the repository")
}

type fixture struct {
	svc     *Service
	st      *sqlite.Store
	shadows *fakeShadows
	devices *fakeDevices
	mu      sync.Mutex
	clock   time.Time
}

// newFixture runs a Service over a real SQLite store with n devices
// dev-1 … dev-n labeled site=a.
func newFixture(t *testing.T, n int, opts Options) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, shadows: newFakeShadows(), devices: &fakeDevices{m: map[string]Device{}}, clock: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	for i := 1; i <= n; i++ {
		f.devices.set(fmt.Sprintf("dev-%d", i), map[string]string{"site": "a"})
	}
	opts.Store, opts.Shadows, opts.Devices, opts.Artifacts = st, f.shadows, f.devices, fakeArtifacts{}
	opts.Logger = slog.New(slog.DiscardHandler)
	if f.svc, err = NewService(opts); err != nil {
		t.Fatal(err)
	}
	f.svc.now = f.now
	return f
}

func (f *fixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(d)
}

func (f *fixture) step(t *testing.T) {
	t.Helper()
	if err := f.svc.Step(t.Context()); err != nil {
		t.Fatalf("Step: %v", err)
	}
}

func (f *fixture) apply(t *testing.T, spec string, want ApplyResult) Deployment {
	t.Helper()
	d, res, err := f.svc.Apply(t.Context(), []byte(spec))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res != want {
		t.Fatalf("Apply = %s, want %s", res, want)
	}
	return d
}

func (f *fixture) get(t *testing.T) Deployment {
	t.Helper()
	d, err := f.svc.Get(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// revs returns the desired revision of web on each device, as rev does.
func (f *fixture) revs(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = f.shadows.rev(id)
	}
	return out
}

func (f *fixture) wantRevs(t *testing.T, want map[string]string) {
	t.Helper()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if got := f.shadows.rev(id); got != want[id] {
			t.Errorf("%s desired revision %q, want %q", id, got, want[id])
		}
	}
}

// spec is a deployment spec of web@version for site=a.
func spec(version, strategy string) string {
	return fmt.Sprintf("name: web\nartifact: web@%s\nselector: {site: a}\nstrategy: {%s}\n", version, strategy)
}

func revision(t *testing.T, s string) string {
	t.Helper()
	sp, err := deployspec.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return sp.Revision()
}

// complete rolls spec out to every device at once and checks it completed.
func (f *fixture) complete(t *testing.T, spec string, ids ...string) string {
	t.Helper()
	rev := revision(t, spec)
	f.svc.Apply(t.Context(), []byte(spec))
	f.shadows.healthy(rev, ids...)
	f.step(t)
	if d := f.get(t); d.State != Complete || d.Revision != rev {
		t.Fatalf("setup: %s %s %q, want complete %s", d.State, d.Revision, d.Message, rev)
	}
	return rev
}

func TestInitialRolloutInBatches(t *testing.T) {
	f := newFixture(t, 5, Options{})
	f.devices.set("other", map[string]string{"site": "b"})
	sp := spec("1.0.0", "batch: 2, max_unavailable: 0, pause: 30s, health_timeout: 1m")
	rev := revision(t, sp)
	d := f.apply(t, sp, Created)
	if d.State != Rolling || d.Batch != 1 || d.Revision != rev || d.Previous != nil || len(d.Devices) != 2 {
		t.Fatalf("after apply: %+v; want rolling batch 1 with 2 devices", d)
	}
	f.wantRevs(t, map[string]string{"dev-1": rev, "dev-2": rev, "dev-3": "", "dev-4": "", "dev-5": "", "other": ""})

	// Nothing reported: the batch waits.
	f.step(t)
	if d := f.get(t); d.Batch != 1 || len(d.Devices) != 2 {
		t.Fatalf("batch moved on without reports: %+v", d)
	}
	// Running but not healthy yet, or an older revision, is not done.
	f.shadows.healthy(rev, "dev-2")
	for _, r := range []protocol.WorkloadReport{
		{Revision: rev, State: "running"},
		{Revision: rev, State: "starting", Healthy: true},
		{Revision: "0000000000000000", State: "running", Healthy: true},
	} {
		f.shadows.report("dev-1", r)
		f.step(t)
		if d := f.get(t); d.Batch != 1 || !d.BatchDoneAt.IsZero() {
			t.Fatalf("batch done with dev-1 reporting %+v: %+v", r, d)
		}
	}
	f.shadows.healthy(rev, "dev-1")
	f.step(t)
	if d := f.get(t); d.Batch != 1 || d.BatchDoneAt.IsZero() {
		t.Fatalf("batch 1 done: %+v; want it seen done and pausing", d)
	}
	f.advance(29 * time.Second)
	f.step(t)
	if d := f.get(t); d.Batch != 1 {
		t.Fatalf("batch 2 started during the pause: %+v", d)
	}
	f.advance(time.Second)
	f.shadows.resetGets()
	f.step(t)
	f.wantRevs(t, map[string]string{"dev-3": rev, "dev-4": rev, "dev-5": ""})
	// Step reads only the current batch's shadows.
	f.shadows.resetGets()
	f.step(t)
	if g := f.shadows.resetGets(); len(g) != 2 || g["dev-3"] != 1 || g["dev-4"] != 1 {
		t.Errorf("Step read the shadows %v; want only batch 2's (dev-3, dev-4) once", g)
	}
	f.shadows.healthy(rev, "dev-3", "dev-4")
	f.step(t)
	f.advance(30 * time.Second)
	f.step(t)
	if d := f.get(t); d.Batch != 3 || len(d.Devices) != 5 || d.Devices["dev-5"].Batch != 3 {
		t.Fatalf("batch 3: %+v", d)
	}
	f.shadows.healthy(rev, "dev-5")
	f.step(t)
	f.advance(30 * time.Second)
	f.step(t)
	d = f.get(t)
	if d.State != Complete || d.Previous == nil || d.Previous.Revision != rev || !strings.Contains(d.Message, "5 devices") {
		t.Fatalf("after the last batch: %+v; want complete with previous = current", d)
	}
	if n := f.shadows.patchCount("other"); n != 0 {
		t.Errorf("a device the selector does not match got %d patches", n)
	}
	// A complete deployment reads no shadow on a step.
	f.shadows.resetGets()
	f.step(t)
	if g := f.shadows.resetGets(); len(g) != 0 {
		t.Errorf("Step of a complete deployment read shadows %v", g)
	}
	// The patch carries the canonical spec.
	var p map[string]map[string]protocol.WorkloadDesired
	if err := json.Unmarshal([]byte(f.shadows.patches["dev-1"][0]), &p); err != nil {
		t.Fatal(err)
	}
	if w := p["workloads"]["web"]; w.Revision != rev || w.Spec != string(d.Spec) {
		t.Errorf("patch %+v; want the revision and canonical spec", w)
	}
}

func TestFailedBatchRollsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		report  protocol.WorkloadReport // dev-2's report of the new revision
		wait    time.Duration           // until the step that fails
		message string
	}{
		{"unhealthy after the timeout", protocol.WorkloadReport{State: "running", Healthy: false, Error: "GET /healthz: 503"}, time.Minute, "dev-2 (running, unhealthy: GET /healthz: 503)"},
		{"error at once", protocol.WorkloadReport{State: protocol.WorkloadError, Error: "artifact refused"}, 0, "dev-2 (error: artifact refused)"},
		{"still on the old revision", protocol.WorkloadReport{}, time.Minute, "dev-2 (running on revision REV1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 4, Options{})
			all := []string{"dev-1", "dev-2", "dev-3", "dev-4"}
			rev1 := f.complete(t, spec("1.0.0", "batch: 100%"), all...)
			before := map[string]int{}
			for _, id := range all {
				before[id] = f.shadows.patchCount(id)
			}
			sp2 := spec("2.0.0", "batch: 2, max_unavailable: 0, health_timeout: 1m")
			rev2 := revision(t, sp2)
			d := f.apply(t, sp2, Updated)
			if d.State != Rolling || d.Previous == nil || d.Previous.Revision != rev1 || d.Batch != 1 {
				t.Fatalf("after apply: %+v", d)
			}
			f.wantRevs(t, map[string]string{"dev-1": rev2, "dev-2": rev2, "dev-3": rev1, "dev-4": rev1})
			// A device joining now gets the previous revision at once.
			f.devices.set("dev-5", map[string]string{"site": "a"})
			f.step(t)
			f.wantRevs(t, map[string]string{"dev-5": rev1})

			f.shadows.healthy(rev2, "dev-1")
			if tc.report.State != "" {
				r := tc.report
				r.Revision = rev2
				f.shadows.report("dev-2", r)
			}
			if tc.wait > 0 {
				f.advance(tc.wait - time.Second)
				f.step(t)
				if d := f.get(t); d.State != Rolling {
					t.Fatalf("failed before the health timeout: %+v", d)
				}
				f.advance(time.Second)
			}
			f.step(t)
			d = f.get(t)
			tc.message = strings.ReplaceAll(tc.message, "REV1", rev1)
			if d.State != Failed || !strings.Contains(d.Message, tc.message) || strings.Contains(d.Message, "dev-1") {
				t.Fatalf("state %s, message %q; want failed naming %q only", d.State, d.Message, tc.message)
			}
			if d.Previous.Revision != rev1 || d.Revision != rev2 {
				t.Errorf("revisions after failure: current %s previous %s", d.Revision, d.Previous.Revision)
			}
			// The failed batch goes back; the others were never touched.
			f.wantRevs(t, map[string]string{"dev-1": rev1, "dev-2": rev1, "dev-3": rev1, "dev-4": rev1})
			for _, id := range []string{"dev-3", "dev-4"} {
				if n := f.shadows.patchCount(id); n != before[id] {
					t.Errorf("%s got %d patches during the failed rollout", id, n-before[id])
				}
			}
			// Failed stays failed; a device joining gets the previous revision.
			f.devices.set("dev-6", map[string]string{"site": "a"})
			f.advance(time.Hour)
			f.step(t)
			if d := f.get(t); d.State != Failed {
				t.Errorf("a failed deployment moved on: %+v", d)
			}
			f.wantRevs(t, map[string]string{"dev-6": rev1})

			// Applying the same spec again restarts the rollout.
			d = f.apply(t, sp2, Updated)
			if d.State != Rolling || d.Batch != 1 || d.Message != "" {
				t.Fatalf("after re-apply: %+v", d)
			}
			f.wantRevs(t, map[string]string{"dev-1": rev2, "dev-2": rev2, "dev-3": rev1})
		})
	}
}

func TestMaxUnavailableTolerance(t *testing.T) {
	f := newFixture(t, 4, Options{})
	sp := spec("1.0.0", "batch: 2, max_unavailable: 1, health_timeout: 1m")
	rev := revision(t, sp)
	f.apply(t, sp, Created)
	f.shadows.healthy(rev, "dev-1")
	f.advance(time.Minute)
	f.step(t)
	// dev-2 never reported: tolerated, batch 2 starts.
	d := f.get(t)
	if d.State != Rolling || d.Batch != 2 || !slices.Equal(d.Unavailable, []string{"dev-2"}) {
		t.Fatalf("after batch 1 with one unavailable device: %+v", d)
	}
	f.wantRevs(t, map[string]string{"dev-3": rev, "dev-4": rev})
	f.shadows.healthy(rev, "dev-3")
	f.advance(time.Minute)
	f.step(t)
	d = f.get(t)
	if d.State != Failed || !strings.Contains(d.Message, "dev-4 (no report)") || !strings.Contains(d.Message, "at most 1") || !strings.Contains(d.Message, "earlier batches: dev-2") {
		t.Fatalf("after a second unavailable device: %s %q", d.State, d.Message)
	}
	// No previous revision: the batch keeps what it has.
	f.wantRevs(t, map[string]string{"dev-1": rev, "dev-2": rev, "dev-3": rev, "dev-4": rev})
}

func TestLabelChangeMovesWorkload(t *testing.T) {
	f := newFixture(t, 3, Options{})
	f.devices.set("dev-3", map[string]string{"site": "b"})
	rev := f.complete(t, spec("1.0.0", "batch: 100%"), "dev-1", "dev-2")
	f.wantRevs(t, map[string]string{"dev-1": rev, "dev-2": rev, "dev-3": ""})

	f.devices.set("dev-2", map[string]string{"site": "b"})
	f.devices.set("dev-3", map[string]string{"site": "a"})
	f.step(t)
	f.wantRevs(t, map[string]string{"dev-1": rev, "dev-2": "null", "dev-3": rev})
	d := f.get(t)
	if d.State != Complete || !slices.Equal(slices.Sorted(maps.Keys(d.Devices)), []string{"dev-1", "dev-3"}) {
		t.Fatalf("after the move: %+v", d)
	}
	// A deleted device is forgotten without a patch (its shadow is gone).
	n := f.shadows.patchCount("dev-1")
	f.devices.remove("dev-1")
	f.step(t)
	if got := f.shadows.patchCount("dev-1"); got != n {
		t.Errorf("deleted device got a patch")
	}
	if d := f.get(t); len(d.Devices) != 1 {
		t.Errorf("devices after delete: %v", d.Devices)
	}
	// A new device joins the complete deployment at once.
	f.devices.set("dev-9", map[string]string{"site": "a", "extra": "x"})
	f.step(t)
	f.wantRevs(t, map[string]string{"dev-9": rev})
	if a := f.get(t).Devices["dev-9"]; a.Revision != rev || a.Batch != 0 {
		t.Errorf("dev-9 assignment %+v", a)
	}
}

func TestNewDeviceWaitsForBatchWithoutPrevious(t *testing.T) {
	f := newFixture(t, 2, Options{})
	sp := spec("1.0.0", "batch: 1, health_timeout: 1m")
	rev := revision(t, sp)
	f.apply(t, sp, Created)
	f.devices.set("dev-0", map[string]string{"site": "a"})
	f.step(t)
	f.wantRevs(t, map[string]string{"dev-0": "", "dev-1": rev, "dev-2": ""})
	f.shadows.healthy(rev, "dev-1")
	f.step(t)
	f.wantRevs(t, map[string]string{"dev-0": rev, "dev-2": ""})
}

func TestApplyUnchangedAndDelete(t *testing.T) {
	f := newFixture(t, 2, Options{})
	sp := spec("1.0.0", "batch: 100%")
	rev := f.complete(t, sp, "dev-1", "dev-2")
	patches := f.shadows.patchCount("dev-1")
	f.apply(t, sp, Unchanged)
	// The same spec written differently (JSON, defaults spelled out) is
	// the same revision.
	same := `{"name":"web","artifact":"web@1.0.0","selector":{"site":"a"},"strategy":{"batch":"100%","type":"rolling","max_unavailable":1}}`
	if d := f.apply(t, same, Unchanged); d.Revision != rev || d.State != Complete {
		t.Errorf("unchanged apply returned %+v", d)
	}
	if n := f.shadows.patchCount("dev-1"); n != patches {
		t.Errorf("an unchanged apply wrote %d patches", n-patches)
	}

	n, err := f.svc.Delete(t.Context(), "web")
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2 devices", n, err)
	}
	f.wantRevs(t, map[string]string{"dev-1": "null", "dev-2": "null"})
	if _, err := f.svc.Get(t.Context(), "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
	if _, err := f.svc.Delete(t.Context(), "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if ds, err := f.svc.List(t.Context()); err != nil || len(ds) != 0 {
		t.Errorf("List after delete = %v, %v", ds, err)
	}
	// The name is free again.
	f.apply(t, sp, Created)
}

func TestDeleteKeepsDevicesItCouldNotClear(t *testing.T) {
	f := newFixture(t, 2, Options{})
	f.complete(t, spec("1.0.0", "batch: 100%"), "dev-1", "dev-2")
	f.shadows.mu.Lock()
	f.shadows.fail["dev-2"] = true
	f.shadows.mu.Unlock()
	if n, err := f.svc.Delete(t.Context(), "web"); err == nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1 and an error", n, err)
	}
	if d := f.get(t); len(d.Devices) != 1 || d.Devices["dev-2"].Revision == "" {
		t.Fatalf("after a partial delete: %+v; want dev-2 kept", d.Devices)
	}
	f.shadows.mu.Lock()
	f.shadows.fail["dev-2"] = false
	f.shadows.mu.Unlock()
	if n, err := f.svc.Delete(t.Context(), "web"); err != nil || n != 1 {
		t.Fatalf("second Delete = %d, %v", n, err)
	}
}

func TestApplyRefused(t *testing.T) {
	f := newFixture(t, 1, Options{})
	for _, tc := range []struct {
		name, spec string
		is         error
		has        []string
	}{
		{"invalid", "name: Web!\nartifact: web\nstrategy: {batch: 0%, max_unavailable: -1}\n", deployspec.ErrInvalid, []string{"name", "artifact", "strategy.batch", "strategy.max_unavailable"}},
		{"unknown artifact", spec("9.9.9", ""), ErrUnknownArtifact, []string{"web@9.9.9", "publish"}},
		{"wrong type", "name: web\nartifact: tool@1.0.0\n", ErrArtifactType, []string{"tool@1.0.0", `"file"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.svc.Apply(t.Context(), []byte(tc.spec))
			if !errors.Is(err, tc.is) {
				t.Fatalf("Apply = %v, want %v", err, tc.is)
			}
			for _, s := range tc.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	var ps deployspec.Problems
	_, _, err := f.svc.Apply(t.Context(), []byte("name: Web!\nartifact: web\nstrategy: {batch: 0%}\n"))
	if !errors.As(err, &ps) || len(ps) < 3 {
		t.Errorf("invalid spec error %v; want deployspec.Problems listing each problem", err)
	}
	if ds, _ := f.svc.Deployments(t.Context()); len(ds) != 0 {
		t.Errorf("refused specs were stored: %v", ds)
	}
}

func TestStatusReadsReports(t *testing.T) {
	f := newFixture(t, 2, Options{})
	rev := f.complete(t, spec("1.0.0", "batch: 100%"), "dev-1", "dev-2")
	f.shadows.report("dev-2", protocol.WorkloadReport{Revision: rev, Version: "1.0.0", State: "backoff", Restarts: 3,
		LastExit: &protocol.WorkloadExit{Code: 1, Reason: "error"}, Limits: "cgroup v2", Error: "exit 1"})
	st, err := f.svc.Status(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if st.Updated != 1 || len(st.DeviceStates) != 2 {
		t.Fatalf("status %+v", st)
	}
	d2 := st.DeviceStates[1]
	if d2.Device != "dev-2" || !d2.Online || d2.Revision != rev || d2.ReportedRevision != rev || d2.State != "backoff" || d2.Healthy ||
		d2.Restarts != 3 || d2.LastExit == nil || d2.LastExit.Code != 1 || d2.Limits != "cgroup v2" || d2.Error != "exit 1" {
		t.Errorf("dev-2 status %+v", d2)
	}
	if _, err := f.svc.Status(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status of nothing: %v", err)
	}
}

// TestRestartResumes runs a rollout across a fresh service on the same
// store (a hub restart).
func TestRestartResumes(t *testing.T) {
	f := newFixture(t, 2, Options{})
	sp := spec("1.0.0", "batch: 1")
	rev := revision(t, sp)
	f.apply(t, sp, Created)
	f.shadows.healthy(rev, "dev-1")
	svc, err := NewService(Options{Store: f.st, Shadows: f.shadows, Devices: f.devices, Artifacts: fakeArtifacts{}})
	if err != nil {
		t.Fatal(err)
	}
	svc.now = f.now
	if err := svc.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.wantRevs(t, map[string]string{"dev-1": rev, "dev-2": rev})
}
