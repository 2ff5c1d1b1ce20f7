package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is a fixed, second-aligned instant the tests count from.
var t0 = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

type message struct {
	topic   string
	payload []byte
}

// fakePub records what the service publishes.
type fakePub struct {
	mu   sync.Mutex
	msgs []message
}

func (p *fakePub) Publish(topic string, payload []byte, _ bool, _ byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, message{topic, append([]byte(nil), payload...)})
	return nil
}

// take returns and forgets the messages published on topic.
func (p *fakePub) take(topic string) []message {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out, keep []message
	for _, m := range p.msgs {
		if m.topic == topic {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	p.msgs = keep
	return out
}

func (p *fakePub) reset() {
	p.mu.Lock()
	p.msgs = nil
	p.mu.Unlock()
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t       *testing.T
	path    string
	st      *sqlite.Store
	pub     *fakePub
	clock   *fakeClock
	svc     *Service
	mu      sync.Mutex
	changes []Execution
}

func newFixture(t *testing.T, devices ...string) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "outpost.db"), pub: &fakePub{}, clock: &fakeClock{now: t0}}
	f.open()
	for _, d := range devices {
		if err := f.st.CreateDevice(t.Context(), store.Device{ID: d, CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// open (re)opens the store and builds a new Service over it, as a hub
// restart does.
func (f *fixture) open() {
	st, err := sqlite.Open(f.t.Context(), f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { st.Close() })
	f.st = st
	f.svc = NewService(st, f.pub, nil, Options{Now: f.clock.Now})
	f.svc.OnChange(func(e Execution) {
		f.mu.Lock()
		f.changes = append(f.changes, e)
		f.mu.Unlock()
	})
}

func (f *fixture) create(id string, devices ...string) Job {
	f.t.Helper()
	j, err := f.svc.Create(f.t.Context(), Spec{ID: id, Document: json.RawMessage(`{"type":"file","n":"` + id + `"}`), Devices: devices})
	if err != nil {
		f.t.Fatalf("Create(%s): %v", id, err)
	}
	return j
}

// call sends a request and returns the single answer and whether it was
// accepted.
func (f *fixture) call(device, jobID, op, payload string) (bool, []byte) {
	f.t.Helper()
	f.svc.HandleMQTT(f.t.Context(), protocol.JobsTopic(device, jobID, op, ""), []byte(payload))
	acc := f.pub.take(protocol.JobsTopic(device, jobID, op, protocol.JobsAccepted))
	rej := f.pub.take(protocol.JobsTopic(device, jobID, op, protocol.JobsRejected))
	if len(acc)+len(rej) != 1 {
		f.t.Fatalf("%s %s %s: %d accepted and %d rejected answers, want one", device, jobID, op, len(acc), len(rej))
	}
	if len(acc) == 1 {
		return true, acc[0].payload
	}
	return false, rej[0].payload
}

func (f *fixture) update(device, jobID, payload string) (protocol.JobsUpdateResponse, *protocol.JobsError) {
	f.t.Helper()
	ok, b := f.call(device, jobID, protocol.JobsOpUpdate, payload)
	if !ok {
		var e protocol.JobsError
		mustJSON(f.t, b, &e)
		return protocol.JobsUpdateResponse{}, &e
	}
	var r protocol.JobsUpdateResponse
	mustJSON(f.t, b, &r)
	return r, nil
}

func (f *fixture) mustUpdate(device, jobID string, status protocol.JobStatus) {
	f.t.Helper()
	if _, e := f.update(device, jobID, `{"status":"`+string(status)+`"}`); e != nil {
		f.t.Fatalf("update %s/%s to %s: %+v", jobID, device, status, e)
	}
}

func (f *fixture) next(device string) *protocol.JobExecution {
	f.t.Helper()
	ok, b := f.call(device, protocol.JobsNext, protocol.JobsOpGet, `{"clientToken":"n"}`)
	if !ok {
		f.t.Fatalf("$next/get rejected: %s", b)
	}
	var r protocol.JobsExecutionResponse
	mustJSON(f.t, b, &r)
	if r.ClientToken != "n" {
		f.t.Fatalf("$next/get clientToken = %q", r.ClientToken)
	}
	return r.Execution
}

// notified returns the notify-next messages sent to device since the last
// call: each one's job id, "" for nothing pending.
func (f *fixture) notified(device string) []string {
	f.t.Helper()
	var out []string
	for _, m := range f.pub.take(protocol.JobsNotifyNextTopic(device)) {
		var n protocol.JobsNotifyNext
		mustJSON(f.t, m.payload, &n)
		if n.Timestamp == 0 {
			f.t.Errorf("notify-next without timestamp: %s", m.payload)
		}
		if n.Execution == nil {
			out = append(out, "")
			continue
		}
		if len(n.Execution.JobDocument) == 0 || n.Execution.ThingName != device {
			f.t.Errorf("notify-next execution lacks its document or thing: %s", m.payload)
		}
		out = append(out, n.Execution.JobID)
	}
	return out
}

func (f *fixture) status(jobID, device string) Execution {
	f.t.Helper()
	e, err := f.svc.Execution(f.t.Context(), jobID, device)
	if err != nil {
		f.t.Fatalf("Execution(%s, %s): %v", jobID, device, err)
	}
	return e
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",") && len(a) == len(b)
}

func TestCreateValidates(t *testing.T) {
	f := newFixture(t, "a", "b")
	ctx := t.Context()
	doc := json.RawMessage(`{"type":"file"}`)
	for name, spec := range map[string]Spec{
		"bad id":         {ID: "a/b", Document: doc, Devices: []string{"a"}},
		"empty id":       {ID: "", Document: doc, Devices: []string{"a"}},
		"no devices":     {ID: "j", Document: doc},
		"twice":          {ID: "j", Document: doc, Devices: []string{"a", "a"}},
		"bad device":     {ID: "j", Document: doc, Devices: []string{"a b"}},
		"unknown device": {ID: "j", Document: doc, Devices: []string{"a", "ghost"}},
		"array document": {ID: "j", Document: json.RawMessage(`[]`), Devices: []string{"a"}},
		"big document":   {ID: "j", Document: json.RawMessage(`{"x":"` + strings.Repeat("x", protocol.MaxJobDocumentBytes) + `"}`), Devices: []string{"a"}},
		"negative":       {ID: "j", Document: doc, Devices: []string{"a"}, QueuedTimeout: -time.Second},
	} {
		if _, err := f.svc.Create(ctx, spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Create = %v, want ErrInvalid", name, err)
		}
	}
	if jobs, _ := f.svc.Jobs(ctx); len(jobs) != 0 {
		t.Fatalf("refused specs stored jobs: %+v", jobs)
	}
	j := f.create("j", "a", "b")
	if j.ID != "j" || !j.CreatedAt.Equal(t0) {
		t.Fatalf("Create = %+v", j)
	}
	if _, err := f.svc.Create(ctx, Spec{ID: "j", Document: doc, Devices: []string{"a"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("Create of an existing id = %v, want ErrExists", err)
	}
	es, err := f.svc.Executions(ctx, "j")
	if err != nil || len(es) != 2 || es[0].Status != protocol.JobQueued || es[0].Version != 1 {
		t.Fatalf("Executions = %+v, %v", es, err)
	}
	if _, err := f.svc.Executions(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Executions of a missing job: %v", err)
	}
	if len(f.changes) != 2 {
		t.Fatalf("OnChange saw %d changes for 2 new executions", len(f.changes))
	}
}

func TestNotifyNextOrderingAcrossJobs(t *testing.T) {
	f := newFixture(t, "a", "b")
	f.create("j1", "a")
	if got := f.notified("a"); !equal(got, []string{"j1"}) {
		t.Fatalf("after j1: notify-next %v", got)
	}
	f.clock.Advance(time.Second)
	f.create("j2", "a", "b")
	if got := f.notified("a"); len(got) != 0 {
		t.Fatalf("j2 is not next on a, but notify-next %v", got)
	}
	if got := f.notified("b"); !equal(got, []string{"j2"}) {
		t.Fatalf("b: notify-next %v, want j2", got)
	}
	if e := f.next("a"); e == nil || e.JobID != "j1" || e.Status != protocol.JobQueued || len(e.JobDocument) == 0 {
		t.Fatalf("$next/get = %+v, want j1 with its document", e)
	}
	// Progress on j1 keeps it next: no notification.
	f.mustUpdate("a", "j1", protocol.JobInProgress)
	if got := f.notified("a"); len(got) != 0 {
		t.Fatalf("IN_PROGRESS update sent notify-next %v", got)
	}
	f.mustUpdate("a", "j1", protocol.JobSucceeded)
	if got := f.notified("a"); !equal(got, []string{"j2"}) {
		t.Fatalf("after j1 succeeded: notify-next %v, want j2", got)
	}
	f.mustUpdate("a", "j2", protocol.JobFailed)
	if got := f.notified("a"); !equal(got, []string{""}) {
		t.Fatalf("after j2 failed: notify-next %v, want an empty one", got)
	}
	if e := f.next("a"); e != nil {
		t.Fatalf("$next/get with nothing pending = %+v", e)
	}
	// A device may also finish the newer job first; the older stays next.
	f.create("j3", "b")
	f.mustUpdate("b", "j3", protocol.JobSucceeded)
	if got := f.notified("b"); len(got) != 0 {
		t.Fatalf("finishing j3 before j2 sent notify-next %v", got)
	}
	if e := f.next("b"); e == nil || e.JobID != "j2" {
		t.Fatalf("$next/get on b = %+v, want j2", e)
	}
}

// at drives a fresh execution of job id on device "a" into status from.
func (f *fixture) at(id string, from protocol.JobStatus, timeouts bool) {
	f.t.Helper()
	spec := Spec{ID: id, Document: json.RawMessage(`{"type":"file"}`), Devices: []string{"a"}}
	if timeouts {
		spec.QueuedTimeout, spec.InProgressTimeout = time.Minute, time.Minute
	}
	if _, err := f.svc.Create(f.t.Context(), spec); err != nil {
		f.t.Fatal(err)
	}
	switch from {
	case protocol.JobQueued:
	case protocol.JobInProgress, protocol.JobSucceeded, protocol.JobFailed, protocol.JobRejected:
		if from != protocol.JobInProgress {
			f.mustUpdate("a", id, protocol.JobInProgress)
		}
		f.mustUpdate("a", id, from)
	case protocol.JobCanceled:
		if err := f.svc.Cancel(f.t.Context(), id); err != nil {
			f.t.Fatal(err)
		}
	case protocol.JobTimedOut:
		if n, err := f.svc.ExpireTimeouts(f.t.Context(), f.clock.Now().Add(time.Hour)); err != nil || n != 1 {
			f.t.Fatalf("ExpireTimeouts = %d, %v", n, err)
		}
	}
	if got := f.status(id, "a").Status; got != from {
		f.t.Fatalf("set-up of %s reached %s, want %s", id, got, from)
	}
}

func TestDeviceTransitions(t *testing.T) {
	all := []protocol.JobStatus{protocol.JobQueued, protocol.JobInProgress, protocol.JobSucceeded, protocol.JobFailed,
		protocol.JobRejected, protocol.JobTimedOut, protocol.JobCanceled}
	f := newFixture(t, "a")
	n := 0
	for _, from := range all {
		for _, to := range all {
			t.Run(fmt.Sprintf("%s_to_%s", from, to), func(t *testing.T) {
				n++
				id := fmt.Sprintf("j%d", n)
				f.at(id, from, from == protocol.JobTimedOut)
				before := f.status(id, "a")
				res, rej := f.update("a", id, `{"status":"`+string(to)+`","statusDetails":{"stage":"x"},"includeJobExecutionState":true,"clientToken":"c1"}`)
				after := f.status(id, "a")
				switch {
				case !to.DeviceSettable():
					if rej == nil || rej.Code != protocol.JobsInvalidRequest {
						t.Fatalf("update to %s = %+v, %+v; want InvalidRequest", to, res, rej)
					}
				case protocol.DeviceMayTransition(from, to):
					if rej != nil {
						t.Fatalf("update rejected: %+v", rej)
					}
					if res.ClientToken != "c1" || res.ExecutionState == nil || res.ExecutionState.Status != to ||
						res.ExecutionState.VersionNumber != before.Version+1 || res.ExecutionState.StatusDetails["stage"] != "x" {
						t.Fatalf("update/accepted = %+v", res)
					}
					if after.Status != to || after.Version != before.Version+1 {
						t.Fatalf("stored %+v after the update", after)
					}
					if to == protocol.JobInProgress && after.StartedAt.IsZero() {
						t.Fatalf("startedAt not set")
					}
				default:
					if rej == nil || rej.Code != protocol.JobsInvalidStateTransition || rej.ClientToken != "c1" ||
						rej.ExecutionState == nil || rej.ExecutionState.Status != from {
						t.Fatalf("update %s→%s = %+v, %+v; want InvalidStateTransition with the state", from, to, res, rej)
					}
				}
				if rej != nil && after.Version != before.Version {
					t.Fatalf("a rejected update changed the version: %d → %d", before.Version, after.Version)
				}
				// Leave nothing pending for the next case.
				_ = f.svc.Cancel(t.Context(), id)
				f.pub.reset()
			})
		}
	}
}

func TestVersionMismatch(t *testing.T) {
	f := newFixture(t, "a")
	f.create("j", "a")
	res, rej := f.update("a", "j", `{"status":"IN_PROGRESS","expectedVersion":1,"includeJobExecutionState":true,"includeJobDocument":true}`)
	if rej != nil || res.ExecutionState.VersionNumber != 2 || len(res.JobDocument) == 0 {
		t.Fatalf("update at version 1 = %+v, %+v", res, rej)
	}
	_, rej = f.update("a", "j", `{"status":"SUCCEEDED","expectedVersion":1,"clientToken":"tok"}`)
	if rej == nil || rej.Code != protocol.JobsVersionMismatch || rej.ClientToken != "tok" || rej.ExecutionState == nil ||
		rej.ExecutionState.VersionNumber != 2 || rej.ExecutionState.Status != protocol.JobInProgress {
		t.Fatalf("stale update = %+v", rej)
	}
	if e := f.status("j", "a"); e.Status != protocol.JobInProgress || e.Version != 2 {
		t.Fatalf("stale update changed the execution: %+v", e)
	}
	if _, rej = f.update("a", "j", `{"status":"SUCCEEDED","expectedVersion":2}`); rej != nil {
		t.Fatalf("update at version 2: %+v", rej)
	}
	// Terminal is final, whatever the version.
	_, rej = f.update("a", "j", `{"status":"IN_PROGRESS","expectedVersion":3}`)
	if rej == nil || rej.Code != protocol.JobsInvalidStateTransition {
		t.Fatalf("update of a SUCCEEDED execution = %+v", rej)
	}
	if e := f.status("j", "a"); e.Status != protocol.JobSucceeded || e.Version != 3 {
		t.Fatalf("final execution = %+v", e)
	}
}

func TestDescribeAndStartNext(t *testing.T) {
	f := newFixture(t, "a", "b")
	ok, b := f.call("a", "", protocol.JobsOpStartNext, `{"clientToken":"s0"}`)
	var sr protocol.JobsExecutionResponse
	mustJSON(t, b, &sr)
	if !ok || sr.Execution != nil || sr.ClientToken != "s0" {
		t.Fatalf("start-next with nothing pending = %v %s", ok, b)
	}
	f.create("j1", "a")
	f.clock.Advance(time.Second)
	f.create("j2", "a")
	f.notified("a")
	ok, b = f.call("a", "", protocol.JobsOpStartNext, `{"statusDetails":{"stage":"download"},"clientToken":"s1"}`)
	sr = protocol.JobsExecutionResponse{}
	mustJSON(t, b, &sr)
	if !ok || sr.Execution == nil || sr.Execution.JobID != "j1" || sr.Execution.Status != protocol.JobInProgress ||
		sr.Execution.VersionNumber != 2 || sr.Execution.StartedAt == 0 || sr.Execution.StatusDetails["stage"] != "download" {
		t.Fatalf("start-next = %s", b)
	}
	// Again: the IN_PROGRESS execution comes back unchanged.
	ok, b = f.call("a", "", protocol.JobsOpStartNext, ``)
	sr = protocol.JobsExecutionResponse{}
	mustJSON(t, b, &sr)
	if !ok || sr.Execution == nil || sr.Execution.JobID != "j1" || sr.Execution.VersionNumber != 2 {
		t.Fatalf("second start-next = %s", b)
	}
	if got := f.notified("a"); len(got) != 0 {
		t.Fatalf("start-next sent notify-next %v", got)
	}

	ok, b = f.call("a", "j2", protocol.JobsOpGet, `{"includeJobDocument":false,"clientToken":"g"}`)
	var gr protocol.JobsExecutionResponse
	mustJSON(t, b, &gr)
	if !ok || gr.Execution == nil || gr.Execution.JobID != "j2" || gr.Execution.Status != protocol.JobQueued ||
		gr.Execution.JobDocument != nil || gr.ClientToken != "g" || gr.Execution.QueuedAt != t0.Add(time.Second).Unix() {
		t.Fatalf("j2/get = %s", b)
	}
	ok, b = f.call("b", "j2", protocol.JobsOpGet, `{"clientToken":"g"}`)
	var rej protocol.JobsError
	mustJSON(t, b, &rej)
	if ok || rej.Code != protocol.JobsResourceNotFound || rej.ClientToken != "g" {
		t.Fatalf("get of another device's job = %s", b)
	}
	if _, r := f.update("a", "nope", `{"status":"IN_PROGRESS"}`); r == nil || r.Code != protocol.JobsResourceNotFound {
		t.Fatalf("update of a missing job = %+v", r)
	}
}

func TestMalformedAndOversizeRequests(t *testing.T) {
	f := newFixture(t, "a")
	f.create("j", "a")
	big := `{"clientToken":"big","status":"IN_PROGRESS","statusDetails":{"k":"` + strings.Repeat("x", protocol.MaxJobsRequestBytes) + `"}}`
	for _, tc := range []struct {
		name, jobID, op, payload, token string
	}{
		{"not json", "j", protocol.JobsOpUpdate, `{"status":`, ""},
		{"wrong type", "j", protocol.JobsOpUpdate, `{"clientToken":"t1","status":5}`, "t1"},
		{"array", "j", protocol.JobsOpUpdate, `[1]`, ""},
		{"no status", "j", protocol.JobsOpUpdate, `{"clientToken":"t2"}`, "t2"},
		{"unknown status", "j", protocol.JobsOpUpdate, `{"clientToken":"t3","status":"DONE"}`, "t3"},
		{"hub-only status", "j", protocol.JobsOpUpdate, `{"clientToken":"t4","status":"CANCELED"}`, "t4"},
		{"details not strings", "j", protocol.JobsOpUpdate, `{"clientToken":"t5","status":"IN_PROGRESS","statusDetails":{"a":1}}`, "t5"},
		{"too many details", "j", protocol.JobsOpUpdate, `{"clientToken":"t6","status":"IN_PROGRESS","statusDetails":{"a":"","b":"","c":"","d":"","e":"","f":"","g":"","h":"","i":"","j":"","k":""}}`, "t6"},
		{"long detail", "j", protocol.JobsOpUpdate, `{"clientToken":"t7","status":"IN_PROGRESS","statusDetails":{"a":"` + strings.Repeat("v", protocol.MaxJobStatusDetailValueLen+1) + `"}}`, "t7"},
		{"long token", "j", protocol.JobsOpUpdate, `{"clientToken":"` + strings.Repeat("t", protocol.MaxClientTokenLen+1) + `","status":"IN_PROGRESS"}`, ""},
		{"bad version", "j", protocol.JobsOpUpdate, `{"clientToken":"t8","status":"IN_PROGRESS","expectedVersion":"x"}`, "t8"},
		{"get bad", protocol.JobsNext, protocol.JobsOpGet, `{"clientToken":"t9","includeJobDocument":"yes"}`, "t9"},
		{"start-next bad", "", protocol.JobsOpStartNext, `{"clientToken":"t10","statusDetails":[]}`, "t10"},
		{"oversize", "j", protocol.JobsOpUpdate, big, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, b := f.call("a", tc.jobID, tc.op, tc.payload)
			var rej protocol.JobsError
			mustJSON(t, b, &rej)
			if ok || rej.Code != protocol.JobsInvalidRequest || rej.ClientToken != tc.token || rej.Message == "" || rej.Timestamp == 0 {
				t.Fatalf("answer = %v %s; want rejected InvalidRequest with clientToken %q", ok, b, tc.token)
			}
		})
	}
	if e := f.status("j", "a"); e.Status != protocol.JobQueued || e.Version != 1 {
		t.Fatalf("bad requests changed the execution: %+v", e)
	}
	// Response and notification topics, and other topics, are ignored.
	f.pub.reset()
	for _, topic := range []string{
		protocol.JobsTopic("a", "j", protocol.JobsOpUpdate, protocol.JobsAccepted),
		protocol.JobsNotifyNextTopic("a"),
		"$aws/things/a/jobs/j/delete",
		"$aws/things/a/shadow/update",
	} {
		f.svc.HandleMQTT(t.Context(), topic, []byte(`{"status":"SUCCEEDED"}`))
	}
	f.pub.mu.Lock()
	n := len(f.pub.msgs)
	f.pub.mu.Unlock()
	if n != 0 {
		t.Fatalf("ignored topics got %d answers", n)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t, "a", "b", "c")
	ctx := t.Context()
	f.create("j1", "a", "b", "c")
	f.clock.Advance(time.Second)
	f.create("j2", "a")
	f.mustUpdate("a", "j1", protocol.JobInProgress)
	f.mustUpdate("c", "j1", protocol.JobSucceeded)
	for _, d := range []string{"a", "b", "c"} {
		f.notified(d)
	}
	if err := f.svc.Cancel(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cancel of a missing job = %v", err)
	}
	f.mu.Lock()
	f.changes = nil
	f.mu.Unlock()
	if err := f.svc.Cancel(ctx, "j1", "a"); err != nil {
		t.Fatal(err)
	}
	if e := f.status("j1", "a"); e.Status != protocol.JobCanceled || e.Version != 3 {
		t.Fatalf("canceled IN_PROGRESS execution = %+v", e)
	}
	if e := f.status("j1", "b"); e.Status != protocol.JobQueued {
		t.Fatalf("Cancel of device a touched b: %+v", e)
	}
	if got := f.notified("a"); !equal(got, []string{"j2"}) {
		t.Fatalf("a after cancel: notify-next %v, want j2", got)
	}
	if _, rej := f.update("a", "j1", `{"status":"SUCCEEDED"}`); rej == nil || rej.Code != protocol.JobsInvalidStateTransition {
		t.Fatalf("device update after cancel = %+v", rej)
	}
	// Canceling the whole job leaves final executions alone.
	if err := f.svc.Cancel(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if e := f.status("j1", "b"); e.Status != protocol.JobCanceled {
		t.Fatalf("b after Cancel(j1) = %+v", e)
	}
	if e := f.status("j1", "c"); e.Status != protocol.JobSucceeded || e.Version != 2 {
		t.Fatalf("Cancel touched a SUCCEEDED execution: %+v", e)
	}
	if got := f.notified("b"); !equal(got, []string{""}) {
		t.Fatalf("b after cancel: notify-next %v, want empty", got)
	}
	if got := f.notified("c"); len(got) != 0 {
		t.Fatalf("c got notify-next %v", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.changes) != 2 || f.changes[0].DeviceID != "a" || f.changes[1].DeviceID != "b" || f.changes[1].Status != protocol.JobCanceled {
		t.Fatalf("OnChange saw %+v", f.changes)
	}
}

func TestTimeouts(t *testing.T) {
	f := newFixture(t, "a", "b")
	ctx := t.Context()
	if _, err := f.svc.Create(ctx, Spec{ID: "j", Document: json.RawMessage(`{"type":"x"}`), Devices: []string{"a", "b"},
		QueuedTimeout: time.Hour, InProgressTimeout: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.notified("a")
	f.notified("b")
	f.clock.Advance(55 * time.Minute)
	f.mustUpdate("a", "j", protocol.JobInProgress) // started at +55m
	for _, tc := range []struct {
		at   time.Duration
		n    int
		want map[string]protocol.JobStatus
	}{
		{59 * time.Minute, 0, map[string]protocol.JobStatus{"a": protocol.JobInProgress, "b": protocol.JobQueued}},
		{60 * time.Minute, 1, map[string]protocol.JobStatus{"a": protocol.JobInProgress, "b": protocol.JobTimedOut}},
		{65 * time.Minute, 1, map[string]protocol.JobStatus{"a": protocol.JobTimedOut, "b": protocol.JobTimedOut}},
		{90 * time.Minute, 0, nil},
	} {
		n, err := f.svc.ExpireTimeouts(ctx, t0.Add(tc.at))
		if err != nil || n != tc.n {
			t.Fatalf("ExpireTimeouts(+%s) = %d, %v; want %d", tc.at, n, err, tc.n)
		}
		for d, st := range tc.want {
			if e := f.status("j", d); e.Status != st {
				t.Fatalf("+%s: %s is %s, want %s", tc.at, d, e.Status, st)
			}
		}
	}
	if r := f.status("j", "b").StatusDetails["reason"]; r != "timed out in QUEUED after 1h0m0s" {
		t.Errorf("b reason = %q", r)
	}
	if r := f.status("j", "a").StatusDetails["reason"]; r != "timed out in IN_PROGRESS after 10m0s" {
		t.Errorf("a reason = %q", r)
	}
	if got := f.notified("a"); !equal(got, []string{""}) {
		t.Errorf("a: notify-next %v after the timeout", got)
	}
	if got := f.notified("b"); !equal(got, []string{""}) {
		t.Errorf("b: notify-next %v after the timeout", got)
	}
	if _, rej := f.update("a", "j", `{"status":"SUCCEEDED"}`); rej == nil || rej.Code != protocol.JobsInvalidStateTransition {
		t.Fatalf("late update = %+v", rej)
	}
}

func TestRunExpires(t *testing.T) {
	f := newFixture(t, "a")
	f.svc = NewService(f.st, f.pub, nil, Options{SweepInterval: 5 * time.Millisecond})
	if _, err := f.svc.Create(t.Context(), Spec{ID: "j", Document: json.RawMessage(`{}`), Devices: []string{"a"}, QueuedTimeout: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		if st := f.status("j", "a").Status; st != protocol.JobTimedOut {
			return fmt.Errorf("execution is %s", st)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := f.svc.Run(t.Context()); !errors.Is(err, ErrRunTwice) {
		t.Fatalf("second Run = %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	f := newFixture(t, "a")
	f.create("j1", "a")
	f.clock.Advance(time.Second)
	f.create("j2", "a")
	f.mustUpdate("a", "j1", protocol.JobInProgress)
	if _, rej := f.update("a", "j1", `{"status":"IN_PROGRESS","statusDetails":{"stage":"download"}}`); rej != nil {
		t.Fatal(rej)
	}
	f.notified("a")
	f.st.Close()
	f.open()
	e := f.next("a")
	if e == nil || e.JobID != "j1" || e.Status != protocol.JobInProgress || e.VersionNumber != 3 || e.StatusDetails["stage"] != "download" {
		t.Fatalf("after restart $next/get = %+v", e)
	}
	if _, rej := f.update("a", "j1", `{"status":"SUCCEEDED","expectedVersion":3}`); rej != nil {
		t.Fatalf("update after restart: %+v", rej)
	}
	if got := f.notified("a"); !equal(got, []string{"j2"}) {
		t.Fatalf("after restart: notify-next %v", got)
	}
	jobs, err := f.svc.Jobs(t.Context())
	if err != nil || len(jobs) != 2 || jobs[0].ID != "j1" || string(jobs[1].Document) != `{"type":"file","n":"j2"}` {
		t.Fatalf("Jobs after restart = %+v, %v", jobs, err)
	}
}

// TestConcurrentUpdatesNeverLoseOne runs updates from two Services (as two
// hub processes would, each with its own locks) against one store.
func TestConcurrentUpdatesNeverLoseOne(t *testing.T) {
	f := newFixture(t, "a")
	f.create("j", "a")
	svcs := []*Service{f.svc, NewService(f.st, nil, nil, Options{})}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := svcs[i%2].update(t.Context(), "a", "j", protocol.JobsUpdateRequest{
				Status: protocol.JobInProgress, StatusDetails: map[string]string{"i": fmt.Sprint(i)}})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if e := f.status("j", "a"); e.Version != n+1 {
		t.Fatalf("version after %d updates = %d", n, e.Version)
	}
}
