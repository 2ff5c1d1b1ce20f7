package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const dev = "dev-1"

var errOffline = errors.New("not connected")

// seenUpdate is an update the fake hub received.
type seenUpdate struct {
	jobID    string
	status   protocol.JobStatus
	details  map[string]string
	accepted bool
}

// fakeHub is the hub end of the jobs topics for one device: it applies the
// device transition rules of package protocol and answers through the
// runner's HandleMessage, as the uplink would deliver the hub's messages.
type fakeHub struct {
	mu      sync.Mutex
	runner  *Runner
	offline bool
	execs   []*protocol.JobExecution // in queue order
	updates []seenUpdate
}

func (h *fakeHub) Publish(_ context.Context, topic string, payload []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.offline {
		return errOffline
	}
	p, err := protocol.ParseJobsTopic(topic)
	if err != nil || !p.IsRequest() || p.DeviceID != dev {
		return fmt.Errorf("unexpected publish to %s", topic)
	}
	switch {
	case p.Op == protocol.JobsOpGet && p.JobID == protocol.JobsNext:
		var req protocol.JobsGetRequest
		_ = json.Unmarshal(payload, &req)
		h.send(protocol.JobsTopic(dev, p.JobID, p.Op, protocol.JobsAccepted), protocol.JobsExecutionResponse{
			Execution: h.nextLocked(), Timestamp: 1, ClientToken: req.ClientToken})
	case p.Op == protocol.JobsOpUpdate:
		var req protocol.JobsUpdateRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			return err
		}
		e := h.find(p.JobID)
		reject := func(code protocol.JobsErrorCode) {
			h.updates = append(h.updates, seenUpdate{jobID: p.JobID, status: req.Status, details: req.StatusDetails})
			h.send(protocol.JobsTopic(dev, p.JobID, p.Op, protocol.JobsRejected), protocol.JobsError{Code: code, ClientToken: req.ClientToken})
		}
		switch {
		case e == nil:
			reject(protocol.JobsResourceNotFound)
		case protocol.ValidJobStatusDetails(req.StatusDetails) != nil:
			reject(protocol.JobsInvalidRequest)
		case !protocol.DeviceMayTransition(e.Status, req.Status):
			reject(protocol.JobsInvalidStateTransition)
		default:
			before := h.nextLocked()
			e.Status, e.StatusDetails, e.VersionNumber = req.Status, req.StatusDetails, e.VersionNumber+1
			h.updates = append(h.updates, seenUpdate{jobID: p.JobID, status: req.Status, details: req.StatusDetails, accepted: true})
			h.send(protocol.JobsTopic(dev, p.JobID, p.Op, protocol.JobsAccepted), protocol.JobsUpdateResponse{
				ExecutionState: &protocol.JobExecutionState{Status: e.Status, StatusDetails: e.StatusDetails, VersionNumber: e.VersionNumber},
				Timestamp:      1, ClientToken: req.ClientToken})
			h.notifyIfChanged(before)
		}
	default:
		return fmt.Errorf("unexpected publish to %s", topic)
	}
	return nil
}

func (h *fakeHub) send(topic string, v any) {
	b, _ := json.Marshal(v)
	h.runner.HandleMessage(topic, b)
}

func (h *fakeHub) find(jobID string) *protocol.JobExecution {
	for _, e := range h.execs {
		if e.JobID == jobID {
			return e
		}
	}
	return nil
}

func (h *fakeHub) nextLocked() *protocol.JobExecution {
	for _, e := range h.execs {
		if !e.Status.Terminal() {
			c := *e
			return &c
		}
	}
	return nil
}

func (h *fakeHub) notifyIfChanged(before *protocol.JobExecution) {
	after := h.nextLocked()
	if (before == nil) == (after == nil) && (before == nil || before.JobID == after.JobID) {
		return
	}
	h.send(protocol.JobsNotifyNextTopic(dev), protocol.JobsNotifyNext{Timestamp: 1, Execution: after})
}

// add queues a job; the runner hears of it if it is next and the hub is
// reachable.
func (h *fakeHub) add(jobID, doc string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	before := h.nextLocked()
	h.execs = append(h.execs, &protocol.JobExecution{JobID: jobID, ThingName: dev, JobDocument: json.RawMessage(doc),
		Status: protocol.JobQueued, VersionNumber: 1, ExecutionNumber: 1})
	if h.runner != nil && !h.offline {
		h.notifyIfChanged(before)
	}
}

func (h *fakeHub) cancel(jobID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	before := h.nextLocked()
	e := h.find(jobID)
	e.Status, e.VersionNumber = protocol.JobCanceled, e.VersionNumber+1
	h.notifyIfChanged(before)
}

func (h *fakeHub) setOffline(off bool) {
	h.mu.Lock()
	h.offline = off
	h.mu.Unlock()
}

func (h *fakeHub) status(jobID string) (protocol.JobStatus, map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.find(jobID)
	return e.Status, e.StatusDetails
}

func (h *fakeHub) seen(jobID string) []seenUpdate {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []seenUpdate
	for _, u := range h.updates {
		if u.jobID == jobID {
			out = append(out, u)
		}
	}
	return out
}

// waitStatus waits until the hub holds jobID in status want.
func (h *fakeHub) waitStatus(t *testing.T, jobID string, want protocol.JobStatus) map[string]string {
	t.Helper()
	var details map[string]string
	testutil.Eventually(t, 5*time.Second, func() error {
		var st protocol.JobStatus
		st, details = h.status(jobID)
		if st != want {
			return fmt.Errorf("job %s is %s, want %s", jobID, st, want)
		}
		return nil
	})
	return details
}

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, job Job, progress func(string, int)) (map[string]string, error)

func (f handlerFunc) Run(ctx context.Context, job Job, progress func(string, int)) (map[string]string, error) {
	return f(ctx, job, progress)
}

// resumableFunc is a handlerFunc that may run again after a restart.
type resumableFunc struct{ handlerFunc }

func (resumableFunc) Resumable() bool { return true }

type reasonErr struct{ reason string }

func (e reasonErr) Error() string  { return "bad: " + e.reason }
func (e reasonErr) Reason() string { return e.reason }

// started runs a Runner over hub until the test ends (or stop is called)
// and tells it the connection is up.
func started(t *testing.T, hub *fakeHub, dir string, handlers map[string]Handler) (r *Runner, stop func()) {
	t.Helper()
	r, err := New(Options{DeviceID: dev, DataDir: dir, Transport: hub, Handlers: handlers})
	if err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	hub.runner = r
	hub.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
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
	r.Connected(ctx)
	return r, stop
}

func statePath(dir string) string { return filepath.Join(dir, Dir, FileName) }

func waitNoState(t *testing.T, dir string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, err := os.Stat(statePath(dir)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s still there (%v)", statePath(dir), err)
		}
		return nil
	})
}

func TestSubscriptions(t *testing.T) {
	r, err := New(Options{DeviceID: dev, DataDir: t.TempDir(), Transport: &fakeHub{}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"$aws/things/dev-1/jobs/notify-next", "$aws/things/dev-1/jobs/+/get/+", "$aws/things/dev-1/jobs/+/update/+"}
	if got := r.Subscriptions(); !slices.Equal(got, want) {
		t.Fatalf("Subscriptions = %q", got)
	}
	for _, f := range want {
		if !protocol.DeviceMayUse(dev, f) {
			t.Errorf("the broker would refuse %s", f)
		}
	}
	if _, err := New(Options{DeviceID: "a/b"}); err == nil {
		t.Fatal("New accepted bad options")
	}
}

func TestHappyPath(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file","path":"/etc/x"}`)
	dir := t.TempDir()
	var mu sync.Mutex
	var ran []string
	file := handlerFunc(func(ctx context.Context, job Job, progress func(string, int)) (map[string]string, error) {
		if _, err := os.Stat(statePath(dir)); err != nil {
			t.Errorf("current.json not written before the handler ran: %v", err)
		}
		mu.Lock()
		ran = append(ran, job.ID)
		mu.Unlock()
		if job.Type != "file" || job.Resumed || len(job.Document) == 0 {
			t.Errorf("job = %+v", job)
		}
		progress("download", 50)
		return map[string]string{"sha256": "abc"}, nil
	})
	started(t, hub, dir, map[string]Handler{"file": file})
	details := hub.waitStatus(t, "j1", protocol.JobSucceeded)
	if details["stage"] != StageCommitted || details["sha256"] != "abc" {
		t.Fatalf("SUCCEEDED details = %v", details)
	}
	ups := hub.seen("j1")
	if len(ups) < 2 || ups[0].status != protocol.JobInProgress || ups[0].details["stage"] != StageStarted {
		t.Fatalf("updates of j1 = %+v", ups)
	}
	waitNoState(t, dir)

	// The next job arrives by notify-next and runs after the first.
	hub.add("j2", `{"type":"file"}`)
	hub.waitStatus(t, "j2", protocol.JobSucceeded)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ran, []string{"j1", "j2"}) {
		t.Fatalf("ran %v", ran)
	}
}

func TestUnsupportedType(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"teleport"}`)
	hub.add("j2", `{"no":"type"}`)
	hub.add("j3", `{"type":"file"}`)
	dir := t.TempDir()
	file := handlerFunc(func(context.Context, Job, func(string, int)) (map[string]string, error) { return nil, nil })
	started(t, hub, dir, map[string]Handler{"file": file})
	for _, id := range []string{"j1", "j2"} {
		d := hub.waitStatus(t, id, protocol.JobRejected)
		if d["reason"] != ReasonUnsupportedType || d["message"] == "" {
			t.Fatalf("%s REJECTED details = %v", id, d)
		}
	}
	hub.waitStatus(t, "j3", protocol.JobSucceeded)
	waitNoState(t, dir)
}

func TestFailureWithReason(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file","fail":"reason"}`)
	hub.add("j2", `{"type":"file","fail":"plain"}`)
	file := handlerFunc(func(_ context.Context, job Job, progress func(string, int)) (map[string]string, error) {
		progress("verify", 90)
		var d struct{ Fail string }
		_ = json.Unmarshal(job.Document, &d)
		if d.Fail == "reason" {
			return map[string]string{"got": "123"}, fmt.Errorf("verifying: %w", reasonErr{"checksum_mismatch"})
		}
		return nil, errors.New("disk full")
	})
	started(t, hub, t.TempDir(), map[string]Handler{"file": file})
	d := hub.waitStatus(t, "j1", protocol.JobFailed)
	if d["reason"] != "checksum_mismatch" || d["stage"] != "verify" || d["message"] != "verifying: bad: checksum_mismatch" || d["got"] != "123" {
		t.Fatalf("j1 FAILED details = %v", d)
	}
	d = hub.waitStatus(t, "j2", protocol.JobFailed)
	if d["reason"] != ReasonError || d["message"] != "disk full" {
		t.Fatalf("j2 FAILED details = %v", d)
	}
}

func TestProgressThrottling(t *testing.T) {
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	r, err := New(Options{DeviceID: dev, DataDir: t.TempDir(), Transport: &fakeHub{}, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.lastSent = progressReport{jobID: "j", stage: StageStarted}
	r.lastSentAt = clock
	var sent []string
	report := func(stage string, pct int) {
		r.report("j", stage, pct)
		select {
		case <-r.progress:
			sent = append(sent, stage+":"+strconv.Itoa(r.prog.percent))
		default:
		}
	}
	report("download", 0) // new stage
	for p := 1; p <= 100; p++ {
		report("download", p)
	}
	report("install", 0)
	report("install", 5)
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	report("install", 6) // a second later
	report("install", 7)
	want := []string{"download:0", "download:10", "download:20", "download:30", "download:40", "download:50",
		"download:60", "download:70", "download:80", "download:90", "download:100", "install:0", "install:6"}
	if !slices.Equal(sent, want) {
		t.Fatalf("sent %v\nwant %v", sent, want)
	}

	// End to end: a chatty handler sends at most one update per 10 %.
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	chatty := handlerFunc(func(_ context.Context, _ Job, progress func(string, int)) (map[string]string, error) {
		for i := range 1000 {
			progress("download", i/10)
		}
		return nil, nil
	})
	started(t, hub, t.TempDir(), map[string]Handler{"file": chatty})
	hub.waitStatus(t, "j1", protocol.JobSucceeded)
	ups := hub.seen("j1")
	if len(ups) > 1+11+1 {
		t.Fatalf("%d updates for 1000 progress calls: %+v", len(ups), ups)
	}
}

func TestRestartResume(t *testing.T) {
	for _, resumable := range []bool{true, false} {
		t.Run("resumable="+strconv.FormatBool(resumable), func(t *testing.T) {
			hub := &fakeHub{}
			hub.add("j1", `{"type":"file"}`)
			dir := t.TempDir()
			running := make(chan struct{})
			blocking := handlerFunc(func(ctx context.Context, _ Job, progress func(string, int)) (map[string]string, error) {
				progress("download", 10)
				close(running)
				<-ctx.Done()
				return nil, ctx.Err()
			})
			_, stop := started(t, hub, dir, map[string]Handler{"file": blocking})
			<-running
			hub.waitStatus(t, "j1", protocol.JobInProgress)
			stop() // the agent dies mid-run: current.json stays without an outcome
			rec, err := loadRecord(statePath(dir))
			if err != nil || rec == nil || rec.JobID != "j1" || rec.Final != nil {
				t.Fatalf("saved state after the stop = %+v, %v", rec, err)
			}

			var resumed []bool
			var mu sync.Mutex
			again := handlerFunc(func(_ context.Context, job Job, _ func(string, int)) (map[string]string, error) {
				mu.Lock()
				resumed = append(resumed, job.Resumed)
				mu.Unlock()
				return nil, nil
			})
			var h Handler = again
			if resumable {
				h = resumableFunc{again}
			}
			started(t, hub, dir, map[string]Handler{"file": h})
			if resumable {
				hub.waitStatus(t, "j1", protocol.JobSucceeded)
				mu.Lock()
				if !slices.Equal(resumed, []bool{true}) {
					t.Errorf("handler runs after restart: %v", resumed)
				}
				mu.Unlock()
			} else {
				d := hub.waitStatus(t, "j1", protocol.JobFailed)
				if d["reason"] != ReasonInterrupted {
					t.Fatalf("FAILED details = %v", d)
				}
				mu.Lock()
				if len(resumed) != 0 {
					t.Errorf("a non-resumable handler ran again")
				}
				mu.Unlock()
			}
			waitNoState(t, dir)
		})
	}
}

func TestRestartReportsSavedOutcome(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	dir := t.TempDir()
	release := make(chan struct{})
	runs := 0
	var mu sync.Mutex
	h := handlerFunc(func(context.Context, Job, func(string, int)) (map[string]string, error) {
		mu.Lock()
		runs++
		mu.Unlock()
		<-release
		return nil, nil
	})
	_, stop := started(t, hub, dir, map[string]Handler{"file": h})
	hub.waitStatus(t, "j1", protocol.JobInProgress)
	hub.setOffline(true)
	close(release)
	testutil.Eventually(t, 5*time.Second, func() error {
		rec, err := loadRecord(statePath(dir))
		if err != nil || rec == nil || rec.Final == nil {
			return fmt.Errorf("no saved outcome yet: %+v %v", rec, err)
		}
		return nil
	})
	stop()
	hub.setOffline(false)
	started(t, hub, dir, map[string]Handler{"file": h})
	hub.waitStatus(t, "j1", protocol.JobSucceeded)
	waitNoState(t, dir)
	mu.Lock()
	defer mu.Unlock()
	if runs != 1 {
		t.Fatalf("handler ran %d times", runs)
	}
}

func TestCancelMidRun(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	dir := t.TempDir()
	running := make(chan struct{}, 2)
	canceled := make(chan struct{})
	h := handlerFunc(func(ctx context.Context, job Job, _ func(string, int)) (map[string]string, error) {
		if job.ID != "j1" {
			return nil, nil
		}
		running <- struct{}{}
		<-ctx.Done()
		close(canceled)
		return nil, ctx.Err()
	})
	started(t, hub, dir, map[string]Handler{"file": h})
	<-running
	hub.waitStatus(t, "j1", protocol.JobInProgress)
	hub.add("j2", `{"type":"file"}`)
	hub.cancel("j1")
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's ctx was not canceled")
	}
	hub.waitStatus(t, "j2", protocol.JobSucceeded)
	if st, _ := hub.status("j1"); st != protocol.JobCanceled {
		t.Fatalf("j1 = %s", st)
	}
	for _, u := range hub.seen("j1") {
		if u.status != protocol.JobInProgress {
			t.Fatalf("the runner reported %s for a canceled job", u.status)
		}
	}
	waitNoState(t, dir)
}

func TestOfflineRetry(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	dir := t.TempDir()
	release := make(chan struct{})
	h := handlerFunc(func(_ context.Context, _ Job, progress func(string, int)) (map[string]string, error) {
		<-release
		return nil, nil
	})
	r, _ := started(t, hub, dir, map[string]Handler{"file": h})
	hub.waitStatus(t, "j1", protocol.JobInProgress)
	hub.setOffline(true)
	close(release)
	testutil.Eventually(t, 5*time.Second, func() error {
		rec, err := loadRecord(statePath(dir))
		if err != nil || rec == nil || rec.Final == nil {
			return fmt.Errorf("no saved outcome yet: %+v %v", rec, err)
		}
		return nil
	})
	if st, _ := hub.status("j1"); st != protocol.JobInProgress {
		t.Fatalf("offline hub has j1 %s", st)
	}
	hub.setOffline(false)
	r.Connected(context.Background())
	hub.waitStatus(t, "j1", protocol.JobSucceeded)
	waitNoState(t, dir)
}

func TestOfflineAtStartRetriesProgress(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	hub.setOffline(true)
	dir := t.TempDir()
	release := make(chan struct{})
	h := handlerFunc(func(ctx context.Context, _ Job, _ func(string, int)) (map[string]string, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	})
	r, _ := started(t, hub, dir, map[string]Handler{"file": h})
	// Offline: the runner hears of the job only by a notify-next that
	// arrived before the link dropped.
	b, _ := json.Marshal(protocol.JobsNotifyNext{Timestamp: 1, Execution: &protocol.JobExecution{
		JobID: "j1", ThingName: dev, JobDocument: json.RawMessage(`{"type":"file"}`), Status: protocol.JobQueued, VersionNumber: 1}})
	r.HandleMessage(protocol.JobsNotifyNextTopic(dev), b)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, err := os.Stat(statePath(dir)); err != nil {
			return err
		}
		return nil
	})
	hub.setOffline(false)
	r.Connected(context.Background())
	hub.waitStatus(t, "j1", protocol.JobInProgress)
	close(release)
	hub.waitStatus(t, "j1", protocol.JobSucceeded)
}

func TestHandlerPanicFails(t *testing.T) {
	hub := &fakeHub{}
	hub.add("j1", `{"type":"file"}`)
	h := handlerFunc(func(context.Context, Job, func(string, int)) (map[string]string, error) { panic("boom") })
	started(t, hub, t.TempDir(), map[string]Handler{"file": h})
	if d := hub.waitStatus(t, "j1", protocol.JobFailed); d["reason"] != ReasonError {
		t.Fatalf("details = %v", d)
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h" {
		t.Fatalf("truncate = %q", got)
	}
	if got := truncate("a\xffb", 10); got != "a\uFFFDb" {
		t.Fatalf("truncate = %q", got)
	}
}
