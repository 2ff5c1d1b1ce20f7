package svcsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/hub/svcsync"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNewNeedsEveryDependency checks that New names each missing
// dependency at once.
func TestNewNeedsEveryDependency(t *testing.T) {
	_, err := svcsync.New(svcsync.Options{})
	if err == nil {
		t.Fatal("New without dependencies succeeded")
	}
	for _, want := range []string{"no registry", "no shadow service", "no device service"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not say %q", err, want)
		}
	}
}

// reg is the real registry over the built-in backend, with helpers.
type reg struct{ *registry.Service }

func (r reg) get(t *testing.T, key string) (registry.Instance, bool) {
	t.Helper()
	service, id, _ := strings.Cut(key, "/")
	ins, err := r.List(t.Context(), service)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.ID == id {
			return in, true
		}
	}
	return registry.Instance{}, false
}

func (r reg) keys(t *testing.T) []string {
	t.Helper()
	ins, err := r.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range ins {
		keys = append(keys, in.Key())
	}
	return keys
}

// devices adapts the device service as the hub does.
type devices struct{ d *device.Service }

func (d devices) All(ctx context.Context) ([]svcsync.Device, error) {
	ds, err := d.d.List(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]svcsync.Device, len(ds))
	for i, x := range ds {
		out[i] = svcsync.Device{ID: x.ID, Online: x.Online}
	}
	return out, nil
}

type env struct {
	reg     reg
	shadows *shadow.Service
	devices *device.Service
	sync    *svcsync.Syncer
	mu      sync.Mutex
	clock   time.Time
	revs    map[string]string
}

func newEnv(t *testing.T, ids ...string) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logger := slog.New(slog.DiscardHandler)
	rs, err := registry.New(registry.Options{Backend: registry.NewStoreBackend(st), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{reg: reg{rs}, shadows: shadow.NewService(st, nil, logger, nil), devices: device.NewService(st, time.Hour, logger),
		clock: time.Unix(1_764_086_400, 0), revs: map[string]string{}}
	for _, id := range ids {
		if _, err := e.devices.Add(t.Context(), id, nil); err != nil {
			t.Fatal(err)
		}
		e.devices.SetPresence(t.Context(), id, true, "1.0.0")
	}
	e.sync, err = svcsync.New(svcsync.Options{
		Registry: e.reg, Shadows: e.shadows, Devices: devices{e.devices}, Logger: logger,
		Now: e.now, ResyncInterval: time.Hour, PresenceInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clock
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clock = e.clock.Add(d)
}

// deploy writes desired.workloads.NAME of a device the way the deploy
// service does; spec without ports when ports is empty.
func (e *env) deploy(t *testing.T, id, name, ports string) {
	t.Helper()
	src := fmt.Sprintf("name: %s\nartifact: %s@1.0.0\n", name, name)
	if ports != "" {
		src += "ports: " + ports + "\n"
	}
	spec, err := deployspec.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e.revs[name] = spec.Revision()
	patch, _ := json.Marshal(map[string]any{protocol.WorkloadsKey: map[string]any{
		name: protocol.WorkloadDesired{Revision: spec.Revision(), Spec: string(spec.Canonical())},
	}})
	if _, err := e.shadows.PatchDesired(t.Context(), id, protocol.WorkloadsShadow, patch, nil); err != nil {
		t.Fatal(err)
	}
}

// report writes reported.workloads.NAME as the agent does; nil r reports
// the workload gone.
func (e *env) report(t *testing.T, id, name string, r *protocol.WorkloadReport) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"state": map[string]any{"reported": map[string]any{protocol.WorkloadsKey: map[string]any{name: r}}}})
	req, err := shadow.ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.shadows.Update(t.Context(), id, protocol.WorkloadsShadow, req); err != nil {
		t.Fatal(err)
	}
}

func (e *env) running(name string, healthy bool) *protocol.WorkloadReport {
	return &protocol.WorkloadReport{Revision: e.revs[name], Version: "1.0.0", State: "running", Healthy: healthy, Address: "10.0.0.5"}
}

func (e *env) mustSync(t *testing.T, id string) {
	t.Helper()
	if err := e.sync.SyncDevice(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

func (e *env) wantHealth(t *testing.T, key string, h registry.Health, output string) registry.Instance {
	t.Helper()
	in, ok := e.reg.get(t, key)
	if !ok {
		t.Fatalf("%s not registered; registry holds %q", key, e.reg.keys(t))
	}
	if in.Health != h || !strings.Contains(in.Output, output) {
		t.Fatalf("%s: %s %q, want %s with %q", key, in.Health, in.Output, h, output)
	}
	return in
}

func TestSyncDevice(t *testing.T) {
	e := newEnv(t, "cam-1")
	e.deploy(t, "cam-1", "web", "[8080, 9090]")
	e.deploy(t, "cam-1", "batch", "")
	e.mustSync(t, "cam-1")
	if keys := e.reg.keys(t); len(keys) != 0 {
		t.Fatalf("registered %q before any report with an address", keys)
	}

	e.report(t, "cam-1", "web", e.running("web", true))
	e.report(t, "cam-1", "batch", e.running("batch", true))
	e.mustSync(t, "cam-1")
	in := e.wantHealth(t, "web/cam-1", registry.Passing, "")
	if in.Address != "10.0.0.5" || in.Port != 8080 || in.Source != registry.SourceAgent || in.Device != "cam-1" ||
		in.Meta["ports"] != "8080,9090" || in.Meta["version"] != "1.0.0" || in.Meta["revision"] != e.revs["web"] {
		t.Errorf("instance %+v", in)
	}
	if keys := e.reg.keys(t); !slices.Equal(keys, []string{"web/cam-1"}) {
		t.Errorf("registry holds %q; want only web (batch has no ports)", keys)
	}

	e.report(t, "cam-1", "web", e.running("web", false))
	e.mustSync(t, "cam-1")
	e.wantHealth(t, "web/cam-1", registry.Critical, "running, unhealthy")

	r := e.running("web", false)
	r.State, r.Error = protocol.WorkloadError, "artifact refused"
	e.report(t, "cam-1", "web", r)
	e.mustSync(t, "cam-1")
	e.wantHealth(t, "web/cam-1", registry.Critical, "error: artifact refused")

	// A new revision the device has not reported yet is critical.
	e.report(t, "cam-1", "web", e.running("web", true))
	e.deploy(t, "cam-1", "web", "[8080, 9091]")
	e.mustSync(t, "cam-1")
	in = e.wantHealth(t, "web/cam-1", registry.Critical, "want "+e.revs["web"])
	if in.Meta["ports"] != "8080,9091" {
		t.Errorf("meta after a new revision: %v", in.Meta)
	}
	e.report(t, "cam-1", "web", e.running("web", true))
	e.mustSync(t, "cam-1")
	e.wantHealth(t, "web/cam-1", registry.Passing, "")

	// Removed from the shadow: deregistered.
	if _, err := e.shadows.PatchDesired(t.Context(), "cam-1", protocol.WorkloadsShadow, []byte(`{"workloads":{"web":null}}`), nil); err != nil {
		t.Fatal(err)
	}
	e.mustSync(t, "cam-1")
	if keys := e.reg.keys(t); len(keys) != 0 {
		t.Errorf("registry holds %q after the workload was removed", keys)
	}
}

func TestOffline(t *testing.T) {
	e := newEnv(t, "cam-1", "cam-2")
	for _, id := range []string{"cam-1", "cam-2"} {
		e.deploy(t, id, "web", "[8080]")
		e.report(t, id, "web", e.running("web", true))
	}
	if err := e.sync.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.wantHealth(t, "web/cam-1", registry.Passing, "")
	e.devices.SetPresence(t.Context(), "cam-1", false, "")
	check := func() {
		t.Helper()
		if err := e.sync.CheckPresence(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	check()
	e.advance(svcsync.DefaultOfflineGrace - time.Second)
	check()
	e.wantHealth(t, "web/cam-1", registry.Passing, "")
	e.advance(time.Second)
	check()
	e.wantHealth(t, "web/cam-1", registry.Critical, svcsync.OfflineOutput)
	e.wantHealth(t, "web/cam-2", registry.Passing, "")
	// A report while offline does not make it pass.
	e.mustSync(t, "cam-1")
	e.wantHealth(t, "web/cam-1", registry.Critical, svcsync.OfflineOutput)

	e.devices.SetPresence(t.Context(), "cam-1", true, "1.0.0")
	check()
	e.wantHealth(t, "web/cam-1", registry.Passing, "")
}

func TestResyncRepairs(t *testing.T) {
	e := newEnv(t, "cam-1", "cam-2")
	for _, id := range []string{"cam-1", "cam-2"} {
		e.deploy(t, id, "web", "[8080]")
		e.report(t, id, "web", e.running("web", true))
	}
	if err := e.sync.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Removed and changed behind the Syncer's back; a device deleted.
	_ = e.reg.Deregister(t.Context(), "web", "cam-1")
	_ = e.reg.SetHealth(t.Context(), "web", "cam-2", registry.Critical, "meddling")
	if _, err := e.reg.Register(t.Context(), registry.Instance{Service: "db", ID: "ghost", Address: "10.0.0.9", Port: 5432, Source: registry.SourceAgent, Device: "ghost", Health: registry.Passing}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Register(t.Context(), registry.Instance{Service: "db", ID: "manual", Address: "10.0.0.9", Port: 5432, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := e.sync.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.wantHealth(t, "web/cam-1", registry.Passing, "")
	e.wantHealth(t, "web/cam-2", registry.Passing, "")
	if keys := e.reg.keys(t); !slices.Equal(keys, []string{"db/manual", "web/cam-1", "web/cam-2"}) {
		t.Errorf("after resync the registry holds %q; want the ghost device's instance gone, the manual one kept", keys)
	}
	if err := e.devices.Delete(t.Context(), "cam-2"); err != nil {
		t.Fatal(err)
	}
	if err := e.sync.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if keys := e.reg.keys(t); !slices.Equal(keys, []string{"db/manual", "web/cam-1"}) {
		t.Errorf("after deleting cam-2 the registry holds %q", keys)
	}
}

// TestRun checks the hook, the presence poll and a clean stop.
func TestRun(t *testing.T) {
	e := newEnv(t, "cam-1")
	e.shadows.OnChange(e.sync.Notify)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.sync.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	e.deploy(t, "cam-1", "web", "[8080]")
	e.report(t, "cam-1", "web", e.running("web", true))
	health := func(want registry.Health) func() error {
		return func() error {
			in, ok := e.reg.get(t, "web/cam-1")
			if !ok || in.Health != want {
				return fmt.Errorf("web/cam-1: %+v, want %s", in, want)
			}
			return nil
		}
	}
	testutil.Eventually(t, 5*time.Second, health(registry.Passing))
	e.devices.SetPresence(t.Context(), "cam-1", false, "")
	testutil.Eventually(t, 5*time.Second, func() error {
		e.advance(time.Second)
		return health(registry.Critical)()
	})
	e.devices.SetPresence(t.Context(), "cam-1", true, "")
	testutil.Eventually(t, 5*time.Second, health(registry.Passing))
	e.report(t, "cam-1", "web", nil)
	if _, err := e.shadows.PatchDesired(t.Context(), "cam-1", protocol.WorkloadsShadow, []byte(`{"workloads":{"web":null}}`), nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, ok := e.reg.get(t, "web/cam-1"); ok {
			return errors.New("still registered")
		}
		return nil
	})
}
