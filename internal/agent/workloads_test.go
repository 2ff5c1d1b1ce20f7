package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/workload"
	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/execbusy"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

const wlWait = 10 * time.Second

// fakeUplink records what the reconciler publishes; failing makes every
// publish fail, as when offline.
type fakeUplink struct {
	mu      sync.Mutex // guards the fields below
	msgs    []wlMessage
	failing bool
}

func (f *fakeUplink) publish(_ context.Context, topic string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return errors.New("offline")
	}
	f.msgs = append(f.msgs, wlMessage{topic: topic, payload: append([]byte(nil), payload...)})
	return nil
}

func (f *fakeUplink) setFailing(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = v
}

// on returns the payloads published on topic.
func (f *fakeUplink) on(topic string) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for _, m := range f.msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

// reported merges every workloads report published so far, as the hub's
// shadow would: a null removes the entry. It also returns the last patch.
func (f *fakeUplink) reported(t *testing.T) (all map[string]protocol.WorkloadReport, last map[string]*protocol.WorkloadReport) {
	t.Helper()
	all = map[string]protocol.WorkloadReport{}
	for _, p := range f.on(protocol.ShadowTopic(device, protocol.WorkloadsShadow, protocol.ShadowOpUpdate, "")) {
		var doc struct {
			State struct {
				Reported struct {
					Workloads map[string]*protocol.WorkloadReport `json:"workloads"`
				} `json:"reported"`
			} `json:"state"`
		}
		if err := json.Unmarshal(p, &doc); err != nil {
			t.Fatalf("report %s: %v", p, err)
		}
		last = doc.State.Reported.Workloads
		for name, r := range last {
			if r == nil {
				delete(all, name)
			} else {
				all[name] = *r
			}
		}
	}
	return all, last
}

// fakeFetch serves artifacts from a map of NAME@VERSION to file content;
// an entry of "" fails.
type fakeFetch struct {
	dir   string
	mu    sync.Mutex // guards files and calls
	files map[string]string
	calls int
	// block, when not nil, holds every fetch until it is closed.
	block chan struct{}
}

func (f *fakeFetch) fetch(ctx context.Context, name, version string) (string, error) {
	f.mu.Lock()
	content, ok := f.files[name+"@"+version]
	f.calls++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if !ok || content == "" {
		return "", errors.New("not in the signed targets metadata")
	}
	p := filepath.Join(f.dir, fmt.Sprintf("dl-%s-%s", name, version))
	return p, os.WriteFile(p, []byte(content), 0o600)
}

// rec is a reconciler and its supervisor, running.
type rec struct {
	w    *workloads
	sup  *workload.Supervisor
	up   *fakeUplink
	dir  string
	stop func()
}

type recOptions struct {
	fetch    func(ctx context.Context, name, version string) (string, error)
	retryMin time.Duration
}

// startRec runs a supervisor and a reconciler on dir until the test ends
// (or stop).
func startRec(t *testing.T, dir string, o recOptions) *rec {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	sup, err := workload.New(workload.Options{DataDir: dir, Logger: log, CgroupRoot: t.TempDir(), StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	up := &fakeUplink{}
	if o.fetch == nil {
		o.fetch = func(context.Context, string, string) (string, error) { return "", errors.New("no fetch in this test") }
	}
	w, err := newWorkloads(workloadsOptions{
		DeviceID: device, DataDir: dir, Address: "127.0.0.1", Advertise: "pump-7.lan", Supervisor: sup, Publish: up.publish, Fetch: o.fetch,
		Logger: log, ReportInterval: 20 * time.Millisecond, RetryMin: o.retryMin, RetryMax: o.retryMin,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := sup.Run(ctx); err != nil {
			t.Errorf("supervisor: %v", err)
		}
	})
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("reconciler: %v", err)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return &rec{w: w, sup: sup, up: up, dir: dir, stop: stop}
}

// desired builds a desired entry from a YAML spec.
func desired(t *testing.T, yaml string) protocol.WorkloadDesired {
	t.Helper()
	s, err := deployspec.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return protocol.WorkloadDesired{Revision: s.Revision(), Spec: string(s.Canonical())}
}

// serviceYAML is a spec of service name running artifact art with the
// given env value (a change of it makes a new revision).
func serviceYAML(name, art, v string) string {
	return fmt.Sprintf("name: %s\nartifact: %s\nports: [8080, 81]\nenv: {V: %q}\nrestart: {backoff_min: 100ms}\n", name, art, v)
}

// sleeper is a service artifact: it prints its environment, then sleeps.
const sleeper = "#!/bin/sh\necho \"up $OUTPOST_DEVICE_ID $OUTPOST_ADDRESS $OUTPOST_PORTS V=$V\"\nexec sleep 600\n"

// place puts an artifact on disk as if downloaded.
func place(t *testing.T, dir, name, version, content string) {
	t.Helper()
	p := filepath.Join(dir, servicesDir, name, version, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := execbusy.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// send delivers desired.workloads as the hub does after an update.
func (r *rec) send(t *testing.T, ws map[string]*protocol.WorkloadDesired) {
	t.Helper()
	doc := protocol.ShadowDocumentsMessage{}
	doc.Current.State = map[string]any{"desired": map[string]any{protocol.WorkloadsKey: ws}}
	// Through JSON, as the wire does.
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	r.w.HandleMessage(r.w.docsTopic, b)
}

// pid waits for name to run and returns its PID.
func (r *rec) pid(t *testing.T, name string) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, wlWait, func() error {
		for _, st := range r.sup.Status() {
			if st.Name == name && st.State == workload.StateRunning && st.PID > 0 {
				pid = st.PID
				return nil
			}
		}
		return fmt.Errorf("%s not running: %+v", name, r.sup.Status())
	})
	return pid
}

// waitReport waits until the merged reports satisfy ok.
func (r *rec) waitReport(t *testing.T, ok func(map[string]protocol.WorkloadReport) error) map[string]protocol.WorkloadReport {
	t.Helper()
	var all map[string]protocol.WorkloadReport
	testutil.Eventually(t, wlWait, func() error {
		all, _ = r.up.reported(t)
		return ok(all)
	})
	return all
}

func reportIs(name, revision, state string) func(map[string]protocol.WorkloadReport) error {
	return func(all map[string]protocol.WorkloadReport) error {
		got, ok := all[name]
		if !ok || got.Revision != revision || got.State != state {
			return fmt.Errorf("report of %s = %+v (present %v), want revision %s state %s", name, got, ok, revision, state)
		}
		return nil
	}
}

func TestWorkloadsDesiredRunsAndIsReported(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})

	pid := r.pid(t, "thermo-api")
	all := r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))
	got := all["thermo-api"]
	if got.Version != "1.0.0" || got.Address != "pump-7.lan" || !got.Healthy || got.Since == 0 || got.Limits != "" || got.Error != "" {
		t.Errorf("report = %+v", got)
	}
	testutil.Eventually(t, wlWait, func() error {
		if lines := r.sup.Logs("thermo-api", 0); len(lines) == 0 || lines[0] != "up pump-7 127.0.0.1 81,8080 V=a" {
			return fmt.Errorf("logs = %q", lines)
		}
		return nil
	})

	// The same desired state again (a reconnect, an unrelated update)
	// restarts nothing and reports nothing new.
	n := len(r.up.on(r.w.updateTopic))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.w.requestGet() // and a resync of the reports
	testutil.Eventually(t, wlWait, func() error {
		if len(r.up.on(r.w.getTopic)) == 0 {
			return errors.New("no get")
		}
		return nil
	})
	// The full report goes again after the get, nothing else changed.
	r.w.HandleMessage(r.w.getAccepted, []byte(`{"state":{"desired":{"workloads":{"thermo-api":`+mustJSON(t, d)+`}},"reported":{"workloads":{"old-svc":{"state":"running"}}}},"version":3}`))
	_, last := r.waitReportPatch(t, n, func(last map[string]*protocol.WorkloadReport) error {
		if _, ok := last["old-svc"]; !ok || last["old-svc"] != nil || last["thermo-api"] == nil {
			return fmt.Errorf("patch after get = %v", last)
		}
		return nil
	})
	if last["thermo-api"].Since != got.Since {
		t.Errorf("since changed: %d, was %d", last["thermo-api"].Since, got.Since)
	}
	if p := r.pid(t, "thermo-api"); p != pid {
		t.Errorf("PID %d after re-applying the same workloads, was %d", p, pid)
	}
	for _, st := range r.sup.Status() {
		if st.Restarts != 0 || st.LastExit != nil {
			t.Errorf("status after re-apply = %+v", st)
		}
	}
}

// waitReportPatch waits for a report published after the first n whose
// patch satisfies ok.
func (r *rec) waitReportPatch(t *testing.T, n int, ok func(map[string]*protocol.WorkloadReport) error) (map[string]protocol.WorkloadReport, map[string]*protocol.WorkloadReport) {
	t.Helper()
	var all map[string]protocol.WorkloadReport
	var last map[string]*protocol.WorkloadReport
	testutil.Eventually(t, wlWait, func() error {
		if len(r.up.on(r.w.updateTopic)) <= n {
			return errors.New("no new report")
		}
		all, last = r.up.reported(t)
		return ok(last)
	})
	return all, last
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWorkloadsRemovalStopsAndReportsNull(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	a, b := desired(t, serviceYAML("svc-a", "thermo@1.0.0", "a")), desired(t, serviceYAML("svc-b", "thermo@1.0.0", "b"))
	r.send(t, map[string]*protocol.WorkloadDesired{"svc-a": &a, "svc-b": &b})
	r.waitReport(t, reportIs("svc-a", a.Revision, "running"))
	r.waitReport(t, reportIs("svc-b", b.Revision, "running"))
	pidB := r.pid(t, "svc-b")

	r.send(t, map[string]*protocol.WorkloadDesired{"svc-a": nil, "svc-b": &b})
	testutil.Eventually(t, wlWait, func() error {
		for _, st := range r.sup.Status() {
			if st.Name == "svc-a" {
				return fmt.Errorf("svc-a still listed: %+v", st)
			}
		}
		return nil
	})
	_, last := r.waitReportPatch(t, 0, func(last map[string]*protocol.WorkloadReport) error {
		if v, ok := last["svc-a"]; !ok || v != nil {
			return fmt.Errorf("last patch = %v, want svc-a: null", last)
		}
		return nil
	})
	if _, ok := last["svc-b"]; ok {
		t.Errorf("unchanged svc-b reported again: %+v", last["svc-b"])
	}
	if p := r.pid(t, "svc-b"); p != pidB {
		t.Errorf("svc-b restarted: PID %d, was %d", p, pidB)
	}
}

func TestWorkloadsRestartFromSavedState(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))
	r.stop()

	// No hub: the service comes back by itself, with its revision.
	r2 := startRec(t, dir, recOptions{})
	pid := r2.pid(t, "thermo-api")
	r2.waitReport(t, reportIs("thermo-api", d.Revision, "running"))

	// The hub then sends the same state: nothing restarts.
	n := len(r2.up.on(r2.w.updateTopic))
	r2.w.HandleMessage(r2.w.getAccepted, []byte(`{"state":{"desired":{"workloads":{"thermo-api":`+mustJSON(t, d)+`}}},"version":3}`))
	r2.waitReportPatch(t, n, func(map[string]*protocol.WorkloadReport) error { return nil })
	if p := r2.pid(t, "thermo-api"); p != pid {
		t.Errorf("PID %d after the hub's state, was %d", p, pid)
	}
}

func TestWorkloadsDownloadFailureKeepsOldRevision(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	ff := &fakeFetch{dir: t.TempDir(), files: map[string]string{"thermo@2.0.0": sleeper}, block: make(chan struct{})}
	r := startRec(t, dir, recOptions{fetch: ff.fetch, retryMin: time.Hour})
	v1 := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &v1})
	r.waitReport(t, reportIs("thermo-api", v1.Revision, "running"))
	pid := r.pid(t, "thermo-api")

	// A missing artifact: downloading, then error; v1 keeps running.
	v3 := desired(t, serviceYAML("thermo-api", "thermo@3.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &v3})
	r.waitReport(t, reportIs("thermo-api", v3.Revision, protocol.WorkloadDownloading))
	close(ff.block)
	all := r.waitReport(t, reportIs("thermo-api", v3.Revision, protocol.WorkloadError))
	if e := all["thermo-api"].Error; !strings.Contains(e, "thermo@3.0.0") || !strings.Contains(e, "not in the signed targets") {
		t.Errorf("error = %q", e)
	}
	if p := r.pid(t, "thermo-api"); p != pid {
		t.Errorf("v1 restarted during the failed download: PID %d, was %d", p, pid)
	}

	// A good one replaces v1 once downloaded.
	v2 := desired(t, serviceYAML("thermo-api", "thermo@2.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &v2})
	all = r.waitReport(t, reportIs("thermo-api", v2.Revision, "running"))
	if all["thermo-api"].Version != "2.0.0" {
		t.Errorf("report = %+v", all["thermo-api"])
	}
	fi, err := os.Stat(filepath.Join(dir, servicesDir, "thermo", "2.0.0", "thermo"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("artifact: %v %v", fi, err)
	}
	if p := r.pid(t, "thermo-api"); p == pid {
		t.Error("v2 did not replace v1")
	}
}

func TestWorkloadsBadSpecReportedAsError(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	good := desired(t, serviceYAML("good", "thermo@1.0.0", "a"))
	wrongRev := desired(t, serviceYAML("wrong-rev", "thermo@1.0.0", "a"))
	wrongRev.Revision = "0123456789abcdef"
	bad := protocol.WorkloadDesired{Revision: "0123456789abcdef", Spec: `{"name":"bad","artifact":"nope"}`}
	// Too little memory for the supervisor, though deployspec accepts it.
	small := desired(t, "name: small\nartifact: thermo@1.0.0\nresources: {memory: 2Mi}\n")
	r.send(t, map[string]*protocol.WorkloadDesired{"good": &good, "wrong-rev": &wrongRev, "bad": &bad, "small": &small})
	all := r.waitReport(t, reportIs("good", good.Revision, "running"))
	for name, want := range map[string]string{"wrong-rev": "not the desired revision", "bad": "invalid spec", "small": "cannot run on this device"} {
		if got := all[name]; got.State != protocol.WorkloadError || !strings.Contains(got.Error, want) {
			t.Errorf("%s: report = %+v, want error with %q", name, got, want)
		}
	}
	for _, st := range r.sup.Status() {
		if st.Name != "good" {
			t.Errorf("%s runs", st.Name)
		}
	}
}

func TestWorkloadsLogs(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "talker", "1.0.0", "#!/bin/sh\nfor i in 1 2 3 4 5; do echo line $i; done\nexec sleep 600\n")
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("talker", "talker@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"talker": &d})
	testutil.Eventually(t, wlWait, func() error {
		if _, last, _ := r.sup.LogsSince("talker", 0, 0); last != 5 {
			return fmt.Errorf("last seq %d", last)
		}
		return nil
	})

	ask := func(req string) protocol.LogsResponse {
		t.Helper()
		n := len(r.up.on(r.w.logsRespTopic))
		r.w.HandleMessage(r.w.logsTopic, []byte(req))
		var resp protocol.LogsResponse
		testutil.Eventually(t, wlWait, func() error {
			got := r.up.on(r.w.logsRespTopic)
			if len(got) <= n {
				return errors.New("no answer")
			}
			return json.Unmarshal(got[n], &resp)
		})
		return resp
	}
	resp := ask(`{"id":"r1","service":"talker","tail":2}`)
	if resp.ID != "r1" || resp.Last != 5 || len(resp.Lines) != 2 || resp.Lines[0].Seq != 4 || resp.Lines[1].Line != "line 5" || resp.Lines[1].Time == 0 || resp.Error != "" {
		t.Errorf("tail 2 = %+v", resp)
	}
	resp = ask(`{"id":"r2","service":"talker","after":3}`)
	if resp.Last != 5 || len(resp.Lines) != 2 || resp.Lines[0].Line != "line 4" {
		t.Errorf("after 3 = %+v", resp)
	}
	resp = ask(`{"id":"r3","service":"talker","after":5}`)
	if resp.Last != 5 || len(resp.Lines) != 0 {
		t.Errorf("after 5 = %+v", resp)
	}
	resp = ask(`{"id":"r4","service":"ghost"}`)
	if resp.Error != "no service ghost on this device" || resp.ID != "r4" {
		t.Errorf("unknown service = %+v", resp)
	}
}

func TestWorkloadsLogsResponseBounded(t *testing.T) {
	dir := t.TempDir()
	// 300 lines of 4000 bytes: 1.2 MB, far above the response limit.
	place(t, dir, "talker", "1.0.0", "#!/bin/sh\nl=$(head -c 4000 /dev/zero | tr '\\0' x)\ni=0\nwhile [ $i -lt 300 ]; do echo \"$l\"; i=$((i+1)); done\nexec sleep 600\n")
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("talker", "talker@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"talker": &d})
	testutil.Eventually(t, wlWait, func() error {
		if _, last, _ := r.sup.LogsSince("talker", 0, 0); last != 300 {
			return fmt.Errorf("last seq %d", last)
		}
		return nil
	})
	resp := r.w.logs(protocol.LogsRequest{ID: "x", Service: "talker"})
	b, _ := json.Marshal(resp)
	if len(b) > protocol.MaxLogsResponseBytes || len(resp.Lines) < 50 || resp.Lines[len(resp.Lines)-1].Seq != 300 {
		t.Errorf("response: %d bytes, %d lines", len(b), len(resp.Lines))
	}
}

func TestLimitsText(t *testing.T) {
	v2 := workload.LimitStatus{Requested: 1, Enforced: true, Via: workload.ViaCgroupV2}
	wd := workload.LimitStatus{Requested: 1, Enforced: true, Via: workload.ViaWatchdog}
	no := workload.LimitStatus{Requested: 1, Via: workload.ViaNone, Reason: "no cgroup v2"}
	for _, tc := range []struct {
		l    workload.Limits
		want string
	}{
		{workload.Limits{}, ""},
		{workload.Limits{CPU: v2, Memory: v2}, "cgroup v2"},
		{workload.Limits{Memory: v2}, "cgroup v2"},
		{workload.Limits{CPU: no, Memory: wd}, "memory: agent watchdog (no cgroup v2); cpu: not enforced: no cgroup v2"},
	} {
		if got := limitsText(tc.l); got != tc.want {
			t.Errorf("limitsText(%+v) = %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestWorkloadsConfigDefaults(t *testing.T) {
	c := config.Default()
	if !c.Workloads.Enabled || c.Workloads.Address != "127.0.0.1" || c.Workloads.StopGrace.D() != 10*time.Second || c.Workloads.LogLines != 1000 {
		t.Errorf("defaults = %+v", c.Workloads)
	}
}

// TestAgentRunsSavedWorkloads runs a whole agent against a broker that
// never answers: the saved workloads run at once and are reported, and
// the agent asks for the workloads shadow.
func TestAgentRunsSavedWorkloads(t *testing.T) {
	b := brokertest.Start(t, "")
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	saved, _ := json.Marshal(workloadsFile{Version: 1, Desired: map[string]protocol.WorkloadDesired{"thermo-api": d}})
	if err := os.WriteFile(filepath.Join(dir, workloadsFileName), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(b.URL)
	cfg.Sources = nil
	cfg.Workloads.Address = "127.0.0.3"
	a, err := New(cfg, Options{DataDir: dir, Version: "1.2.3", CgroupRoot: t.TempDir(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	update := protocol.ShadowTopic(device, protocol.WorkloadsShadow, protocol.ShadowOpUpdate, "")
	testutil.Eventually(t, wlWait, func() error {
		if len(b.Published(protocol.ShadowTopic(device, protocol.WorkloadsShadow, protocol.ShadowOpGet, ""))) == 0 {
			return errors.New("no get of the workloads shadow")
		}
		for _, m := range b.Published(update) {
			var doc struct {
				State struct {
					Reported struct {
						Workloads map[string]protocol.WorkloadReport `json:"workloads"`
					} `json:"reported"`
				} `json:"state"`
			}
			if json.Unmarshal(m.Payload, &doc) == nil {
				if r := doc.State.Reported.Workloads["thermo-api"]; r.Revision == d.Revision && r.State == "running" {
					return nil
				}
			}
		}
		return fmt.Errorf("no running report on %s", update)
	})
	testutil.Eventually(t, wlWait, func() error {
		if lines := a.supervisor.Logs("thermo-api", 0); len(lines) == 0 || lines[0] != "up pump-7 127.0.0.3 81,8080 V=a" {
			return fmt.Errorf("logs = %q", lines)
		}
		return nil
	})
}

func TestWorkloadsReportSentOnceOnline(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	r.up.setFailing(true)
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.pid(t, "thermo-api")
	if got := r.up.on(r.w.updateTopic); len(got) != 0 {
		t.Fatalf("published while offline: %q", got)
	}
	r.up.setFailing(false)
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))
}

func TestWorkloadsDownloadRetried(t *testing.T) {
	dir := t.TempDir()
	ff := &fakeFetch{dir: t.TempDir(), files: map[string]string{}}
	r := startRec(t, dir, recOptions{fetch: ff.fetch, retryMin: 10 * time.Millisecond})
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.waitReport(t, reportIs("thermo-api", d.Revision, protocol.WorkloadError))
	ff.mu.Lock()
	ff.files["thermo@1.0.0"] = sleeper // published meanwhile
	ff.mu.Unlock()
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.calls < 2 {
		t.Errorf("%d fetches", ff.calls)
	}
}

func TestWorkloadsNoShadowStopsSavedOnes(t *testing.T) {
	dir := t.TempDir()
	place(t, dir, "thermo", "1.0.0", sleeper)
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("thermo-api", "thermo@1.0.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))

	// The hub has no workloads shadow (any more): nothing is desired,
	// and there is no reported section to clear.
	r.w.HandleMessage(r.w.getRejected, []byte(`{"code":404,"message":"no shadow"}`))
	testutil.Eventually(t, wlWait, func() error {
		if st := r.sup.Status(); len(st) != 0 {
			return fmt.Errorf("still supervised: %+v", st)
		}
		return nil
	})
	// A refusal for another reason changes nothing.
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.pid(t, "thermo-api")
	r.w.HandleMessage(r.w.getRejected, []byte(`{"code":500,"message":"oops"}`))
	r.w.trigger()
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))
}

// Artifacts nothing uses are deleted once a new set runs: the newest
// unused version of each artifact stays (a quick rollback, a redeploy),
// older ones go, also those of services no longer deployed.
func TestWorkloadsPruneArtifacts(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i, v := range []string{"1.0.0", "1.1.0", "1.2.0", "0.9.0"} {
		place(t, dir, "thermo", v, sleeper)
		// Downloaded in this order: 0.9.0 last, although it is older.
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(filepath.Join(dir, servicesDir, "thermo", v), at, at); err != nil {
			t.Fatal(err)
		}
	}
	place(t, dir, "retired", "2.0.0", sleeper)
	place(t, dir, "retired", "1.0.0", sleeper)
	old := base.Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, servicesDir, "retired", "1.0.0"), old, old); err != nil {
		t.Fatal(err)
	}
	r := startRec(t, dir, recOptions{})
	d := desired(t, serviceYAML("thermo-api", "thermo@1.2.0", "a"))
	r.send(t, map[string]*protocol.WorkloadDesired{"thermo-api": &d})
	r.waitReport(t, reportIs("thermo-api", d.Revision, "running"))

	exists := func(parts ...string) bool {
		_, err := os.Stat(filepath.Join(append([]string{dir, servicesDir}, parts...)...))
		return err == nil
	}
	testutil.Eventually(t, wlWait, func() error {
		if exists("retired", "1.0.0") || exists("thermo", "1.0.0") || exists("thermo", "1.1.0") {
			return errors.New("unused artifacts still on disk")
		}
		return nil
	})
	if !exists("thermo", "1.2.0", "thermo") {
		t.Error("the running version was deleted")
	}
	if !exists("thermo", "0.9.0", "thermo") || !exists("retired", "2.0.0", "retired") {
		t.Error("the most recently downloaded unused version was deleted")
	}
}
