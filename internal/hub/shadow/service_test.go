package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is an in-memory Store with the same compare-and-set rules as
// the SQLite engine. conflicts makes the next PutShadow calls fail with
// store.ErrVersionConflict.
type memStore struct {
	mu        sync.Mutex
	devices   map[string]bool
	rows      map[[2]string]store.Shadow
	conflicts int
	puts      int
}

func newMemStore(devices ...string) *memStore {
	m := &memStore{devices: map[string]bool{}, rows: map[[2]string]store.Shadow{}}
	for _, d := range devices {
		m.devices[d] = true
	}
	return m
}

func (m *memStore) Shadow(_ context.Context, id, name string) (store.Shadow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, ok := m.rows[[2]string{id, name}]
	if !ok {
		return store.Shadow{}, store.ErrNotFound
	}
	return sh, nil
}

func (m *memStore) UpdateShadow(_ context.Context, id, name string, fn func(store.Shadow, bool) (store.Shadow, error)) (store.Shadow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.devices[id] {
		return store.Shadow{}, store.ErrNotFound
	}
	k := [2]string{id, name}
	cur, found := m.rows[k]
	if !found {
		cur = store.Shadow{DeviceID: id, Name: name}
	}
	next, err := fn(cur, found)
	if err != nil {
		return store.Shadow{}, err
	}
	if m.conflicts > 0 {
		m.conflicts--
		return store.Shadow{}, store.ErrVersionConflict
	}
	next.DeviceID, next.Name, next.Deleted = id, name, false
	m.rows[k] = next
	m.puts++
	return next, nil
}

func (m *memStore) DeleteShadow(_ context.Context, id, name string, at time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{id, name}
	sh, ok := m.rows[k]
	if !ok || sh.Deleted {
		return 0, store.ErrNotFound
	}
	sh.Deleted, sh.Doc, sh.UpdatedAt = true, nil, at
	m.rows[k] = sh
	return sh.Version, nil
}

type message struct {
	Topic   string
	Payload []byte
}

// recorder is a Publisher that keeps what is published.
type recorder struct {
	mu   sync.Mutex
	msgs []message
}

func (r *recorder) Publish(topic string, payload []byte, _ bool, _ byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, message{topic, append([]byte(nil), payload...)})
	return nil
}

// take returns and forgets what was published so far.
func (r *recorder) take() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.msgs
	r.msgs = nil
	return out
}

func topicsOf(msgs []message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Topic
	}
	return out
}

func find(t *testing.T, msgs []message, topic string, v any) bool {
	t.Helper()
	for _, m := range msgs {
		if m.Topic == topic {
			if err := json.Unmarshal(m.Payload, v); err != nil {
				t.Fatalf("%s: %v in %s", topic, err, m.Payload)
			}
			return true
		}
	}
	return false
}

type fixture struct {
	svc   *Service
	st    *memStore
	pub   *recorder
	clock time.Time
}

func newFixture(t *testing.T, devices ...string) *fixture {
	t.Helper()
	f := &fixture{st: newMemStore(devices...), pub: &recorder{}, clock: time.Unix(1_764_086_400, 0)}
	f.svc = NewService(f.st, f.pub, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	f.svc.now = func() time.Time { return f.clock }
	return f
}

func (f *fixture) update(t *testing.T, id, name, payload string) (UpdateResult, error) {
	t.Helper()
	req, err := ParseRequest([]byte(payload))
	if err != nil {
		t.Fatalf("ParseRequest(%s): %v", payload, err)
	}
	return f.svc.Update(context.Background(), id, name, req)
}

func (f *fixture) mustUpdate(t *testing.T, id, name, payload string) UpdateResult {
	t.Helper()
	res, err := f.update(t, id, name, payload)
	if err != nil {
		t.Fatalf("update %s: %v", payload, err)
	}
	return res
}

func wantRejection(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var r *Rejection
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want a %d rejection", err, code)
	}
	if r.Code != code || !strings.Contains(r.Message, msg) {
		t.Errorf("rejection = %d %q, want %d containing %q", r.Code, r.Message, code, msg)
	}
}

func TestServiceLifecycle(t *testing.T) {
	f := newFixture(t, "pump-7")
	ctx := context.Background()
	if _, err := f.svc.Get(ctx, "pump-7", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any update: %v", err)
	}
	res := f.mustUpdate(t, "pump-7", "", `{"state":{"reported":{"mode":"auto"}},"clientToken":"c1"}`)
	if res.Accepted.Version != 1 || res.Accepted.ClientToken != "c1" || res.Accepted.Timestamp != f.clock.Unix() {
		t.Errorf("first update accepted = %+v, want version 1, token c1", res.Accepted)
	}
	f.clock = f.clock.Add(time.Minute)
	res = f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"mode":"eco"}}}`)
	if res.Document.Version != 2 {
		t.Errorf("second update version = %d", res.Document.Version)
	}
	doc, err := f.svc.Get(ctx, "pump-7", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(doc)
	want := fmt.Sprintf(`{"state":{"delta":{"mode":"eco"},"desired":{"mode":"eco"},"reported":{"mode":"auto"}},`+
		`"metadata":{"desired":{"mode":{"timestamp":%d}},"reported":{"mode":{"timestamp":%d}}},"version":2,"timestamp":%d}`,
		f.clock.Unix(), f.clock.Add(-time.Minute).Unix(), f.clock.Unix())
	if string(b) != want {
		t.Errorf("Get\n got %s\nwant %s", b, want)
	}

	v, err := f.svc.Delete(ctx, "pump-7", "")
	if err != nil || v != 2 {
		t.Fatalf("Delete = %d, %v; want 2", v, err)
	}
	_, err = f.svc.Get(ctx, "pump-7", "")
	wantRejection(t, err, http.StatusNotFound, "No shadow exists with name: 'pump-7'")
	_, err = f.svc.Delete(ctx, "pump-7", "")
	wantRejection(t, err, http.StatusNotFound, "No shadow exists with name: 'pump-7'")

	// After a delete the version continues; the new shadow starts empty.
	f.pub.take()
	res = f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"x":1}}}`)
	if res.Document.Version != 3 {
		t.Errorf("version after delete = %d, want 3", res.Document.Version)
	}
	if s := res.Document.State; s["reported"] != nil || s["desired"] == nil {
		t.Errorf("state after re-creation = %v, want desired only", s)
	}
	var docs protocol.ShadowDocumentsMessage
	if !find(t, f.pub.take(), protocol.ShadowTopic("pump-7", "", "update", "documents"), &docs) || docs.Previous != nil || docs.Current.Version != 3 {
		t.Errorf("documents after re-creation: %+v, want no previous and current version 3", docs)
	}
	// A stale version against the deleted shadow's version conflicts.
	_, err = f.update(t, "pump-7", "", `{"state":{"desired":{"x":2}},"version":0}`)
	wantRejection(t, err, http.StatusConflict, "Version conflict")
}

func TestServiceAnnouncements(t *testing.T) {
	const id = "pump-7"
	delta := protocol.ShadowTopic(id, "", "update", "delta")
	documents := protocol.ShadowTopic(id, "", "update", "documents")
	f := newFixture(t, id)

	// Reported only, nothing desired: documents, no delta.
	f.mustUpdate(t, id, "", `{"state":{"reported":{"s":{"t":{"interval":"1s","on":true}}}}}`)
	if got := topicsOf(f.pub.take()); len(got) != 1 || got[0] != documents {
		t.Errorf("after a reported update published %v, want documents only", got)
	}

	// Desired that differs: the delta holds only the differing leaf.
	f.clock = f.clock.Add(time.Second)
	f.mustUpdate(t, id, "", `{"state":{"desired":{"s":{"t":{"interval":"200ms","on":true}}}},"clientToken":"op-1"}`)
	msgs := f.pub.take()
	var dm protocol.ShadowDeltaMessage
	if !find(t, msgs, delta, &dm) {
		t.Fatalf("no delta published: %v", topicsOf(msgs))
	}
	if b, _ := json.Marshal(dm.State); string(b) != `{"s":{"t":{"interval":"200ms"}}}` {
		t.Errorf("delta state = %s", b)
	}
	if b, _ := json.Marshal(dm.Metadata); string(b) != fmt.Sprintf(`{"s":{"t":{"interval":{"timestamp":%d}}}}`, f.clock.Unix()) {
		t.Errorf("delta metadata = %s", b)
	}
	if dm.Version != 2 || dm.ClientToken != "op-1" || dm.Timestamp != f.clock.Unix() {
		t.Errorf("delta header = %+v", dm)
	}
	var docs protocol.ShadowDocumentsMessage
	if !find(t, msgs, documents, &docs) {
		t.Fatalf("no documents published: %v", topicsOf(msgs))
	}
	if docs.Previous == nil || docs.Previous.Version != 1 || docs.Current.Version != 2 || docs.ClientToken != "op-1" {
		t.Errorf("documents = %+v", docs)
	}
	if docs.Previous.State["desired"] != nil || docs.Current.State["desired"] == nil || docs.Current.State["delta"] != nil {
		t.Errorf("documents states: previous %v, current %v", docs.Previous.State, docs.Current.State)
	}

	// The device reports something else but not the desired value: the
	// delta is not announced again (no loop with a device that cannot apply it).
	f.mustUpdate(t, id, "", `{"state":{"reported":{"error":"cannot apply"}}}`)
	if got := topicsOf(f.pub.take()); len(got) != 1 || got[0] != documents {
		t.Errorf("after a reported update with a standing delta published %v, want documents only", got)
	}

	// Another desired change announces the whole delta, not only its key.
	f.mustUpdate(t, id, "", `{"state":{"desired":{"level":"debug"}}}`)
	dm = protocol.ShadowDeltaMessage{}
	if !find(t, f.pub.take(), delta, &dm) {
		t.Fatal("no delta for the second desired change")
	}
	if b, _ := json.Marshal(dm.State); string(b) != `{"level":"debug","s":{"t":{"interval":"200ms"}}}` {
		t.Errorf("second delta = %s", b)
	}

	// Reported catches up: no delta; then a desired update equal to reported: none either.
	f.mustUpdate(t, id, "", `{"state":{"reported":{"level":"debug","s":{"t":{"interval":"200ms"}}}}}`)
	f.mustUpdate(t, id, "", `{"state":{"desired":{"level":"debug"}}}`)
	for _, m := range f.pub.take() {
		if m.Topic == delta {
			t.Errorf("delta published although desired equals reported: %s", m.Payload)
		}
	}
}

func TestServiceRejections(t *testing.T) {
	const id = "pump-7"
	f := newFixture(t, id)
	f.mustUpdate(t, id, "", `{"state":{"desired":{"a":1}}}`)
	f.pub.take()
	fill := strings.Repeat("x", protocol.MaxShadowStateBytes-len(`{"a":""}`))
	tests := []struct {
		name, deviceID, shadow, payload string
		code                            int
		msg                             string
	}{
		{"stale version", id, "", `{"state":{"desired":{"a":2}},"version":0}`, 409, "Version conflict"},
		{"future version", id, "", `{"state":{"desired":{"a":2}},"version":2}`, 409, "Version conflict"},
		{"state over the limit", id, "", `{"state":{"reported":{"a":"` + fill + `"}}}`, 413, "exceeds the maximum size"},
		{"unknown device", "ghost", "", `{"state":{"desired":{"a":2}}}`, 404, "No device exists with id: 'ghost'"},
		{"bad device id", "bad/id", "", `{"state":{}}`, 400, "Invalid thing name"},
		{"bad shadow name", id, "no spaces", `{"state":{}}`, 400, "Invalid shadow name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.update(t, tc.deviceID, tc.shadow, tc.payload)
			wantRejection(t, err, tc.code, tc.msg)
			if msgs := f.pub.take(); len(msgs) != 0 {
				t.Errorf("a rejected update published %v", topicsOf(msgs))
			}
		})
	}
	doc, err := f.svc.Get(context.Background(), id, "")
	if err != nil || doc.Version != 1 {
		t.Fatalf("after rejections: version %d, %v; want 1", doc.Version, err)
	}
	if got := promtest.ToFloat64(f.svc.rejected.WithLabelValues("update", "409")); got != 2 {
		t.Errorf("rejected{update,409} = %v, want 2", got)
	}
	// Exactly at the limit is fine: the current desired {"a":1} goes.
	if _, err := f.update(t, id, "", `{"state":{"desired":null,"reported":{"a":"`+fill[:len(fill)]+`"}}}`); err != nil {
		t.Errorf("state of exactly %d bytes refused: %v", protocol.MaxShadowStateBytes, err)
	}
}

func TestServiceVersionedUpdate(t *testing.T) {
	f := newFixture(t, "pump-7")
	f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"a":1}},"version":0}`)
	res := f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"a":2}},"version":1}`)
	if res.Document.Version != 2 {
		t.Errorf("version = %d, want 2", res.Document.Version)
	}
}

func TestServiceNamedShadows(t *testing.T) {
	f := newFixture(t, "pump-7")
	ctx := context.Background()
	f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"classic":true}}}`)
	res := f.mustUpdate(t, "pump-7", "config", `{"state":{"desired":{"named":true}}}`)
	if res.Document.Version != 1 {
		t.Errorf("named shadow version = %d, want 1 (versions are per shadow)", res.Document.Version)
	}
	var dm protocol.ShadowDeltaMessage
	if !find(t, f.pub.take(), protocol.ShadowTopic("pump-7", "config", "update", "delta"), &dm) {
		t.Error("no delta on the named shadow's topic")
	}
	doc, err := f.svc.Get(ctx, "pump-7", "config")
	if err != nil {
		t.Fatal(err)
	}
	if d := doc.State["desired"].(map[string]any); d["named"] != true || d["classic"] != nil {
		t.Errorf("named shadow desired = %v", d)
	}
	if _, err := f.svc.Delete(ctx, "pump-7", "config"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Get(ctx, "pump-7", ""); err != nil {
		t.Errorf("deleting the named shadow touched the classic one: %v", err)
	}
	_, err = f.svc.Get(ctx, "pump-7", "config")
	wantRejection(t, err, 404, "No shadow exists with name: 'pump-7~config'")
}

func TestServicePatchDesired(t *testing.T) {
	f := newFixture(t, "pump-7")
	ctx := context.Background()
	doc, err := f.svc.PatchDesired(ctx, "pump-7", "", []byte(`{"sources":{"temperature":{"interval":"200ms"}}}`), nil)
	if err != nil || doc.Version != 1 {
		t.Fatalf("PatchDesired = %+v, %v", doc, err)
	}
	v := int64(1)
	if doc, err = f.svc.PatchDesired(ctx, "pump-7", "", []byte(`{"sources":{"temperature":null}}`), &v); err != nil || doc.Version != 2 {
		t.Fatalf("PatchDesired with version 1 = %+v, %v", doc, err)
	}
	if len(doc.State) != 0 {
		t.Errorf("state after deleting the only key = %v, want empty", doc.State)
	}
	_, err = f.svc.PatchDesired(ctx, "pump-7", "", []byte(`{"a":1}`), &v)
	wantRejection(t, err, 409, "Version conflict")
	_, err = f.svc.PatchDesired(ctx, "pump-7", "", []byte(`[1]`), nil)
	wantRejection(t, err, 400, "must be an object")
}

// TestServiceRetriesLostWrite: an update without a version tries again
// when the store reports another writer got in between; one with a version
// is a conflict.
func TestServiceRetriesLostWrite(t *testing.T) {
	f := newFixture(t, "pump-7")
	f.st.conflicts = maxAttempts - 1
	if res := f.mustUpdate(t, "pump-7", "", `{"state":{"desired":{"a":1}}}`); res.Document.Version != 1 {
		t.Errorf("version = %d", res.Document.Version)
	}
	f.st.conflicts = 1
	_, err := f.update(t, "pump-7", "", `{"state":{"desired":{"a":2}},"version":1}`)
	wantRejection(t, err, 409, "Version conflict")
	f.st.conflicts = maxAttempts
	_, err = f.update(t, "pump-7", "", `{"state":{"desired":{"a":3}}}`)
	wantRejection(t, err, 409, "Version conflict")
	f.st.conflicts = 0
	if doc, _ := f.svc.Get(context.Background(), "pump-7", ""); doc.Version != 1 {
		t.Errorf("version after lost writes = %d, want 1", doc.Version)
	}
}

// TestConcurrentUpdatesNeverLoseOne runs updates from two Services (as two
// hub processes would, each with its own locks) against one SQLite store:
// every update lands and the version counts them all.
func TestConcurrentUpdatesNeverLoseOne(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateDevice(ctx, store.Device{ID: "pump-7", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svcs := []*Service{NewService(st, nil, logger, nil), NewService(st, nil, logger, nil)}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			section := "desired"
			if i%2 == 0 {
				section = "reported"
			}
			req, err := ParseRequest(fmt.Appendf(nil, `{"state":{%q:{"k%d":%d}}}`, section, i, i))
			if err == nil {
				_, err = svcs[i%2].Update(ctx, "pump-7", "", req)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	doc, err := svcs[0].Get(ctx, "pump-7", "")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != n {
		t.Errorf("version = %d, want %d", doc.Version, n)
	}
	keys := 0
	for _, sec := range []string{"desired", "reported"} {
		keys += len(doc.State[sec].(map[string]any))
	}
	if keys != n {
		t.Errorf("%d keys stored, want %d: %v", keys, n, doc.State)
	}
}

func TestHandleMQTT(t *testing.T) {
	const id = "pump-7"
	topic := func(name, op, suffix string) string { return protocol.ShadowTopic(id, name, op, suffix) }
	f := newFixture(t, id)
	ctx := context.Background()

	f.svc.HandleMQTT(ctx, topic("", "update", ""), []byte(`{"state":{"reported":{"a":1}},"clientToken":"u1"}`))
	msgs := f.pub.take()
	var acc protocol.ShadowDocument
	if !find(t, msgs, topic("", "update", "accepted"), &acc) || acc.Version != 1 || acc.ClientToken != "u1" {
		t.Fatalf("update: %v; accepted %+v", topicsOf(msgs), acc)
	}

	tests := []struct {
		name, topic, payload string
		wantTopic            string
		wantCode             int
		wantToken            string
	}{
		{"malformed update", topic("", "update", ""), `{"state":`, topic("", "update", "rejected"), 400, ""},
		{"stale version", topic("", "update", ""), `{"state":{"desired":{"a":2}},"version":7,"clientToken":"s"}`, topic("", "update", "rejected"), 409, "s"},
		{"oversize", topic("", "update", ""), strings.Repeat(" ", protocol.MaxShadowRequestBytes+1), topic("", "update", "rejected"), 413, ""},
		{"get missing named shadow", topic("cfg", "get", ""), `{"clientToken":"g"}`, topic("cfg", "get", "rejected"), 404, "g"},
		{"delete missing named shadow", topic("cfg", "delete", ""), ``, topic("cfg", "delete", "rejected"), 404, ""},
		{"get", topic("", "get", ""), `{"clientToken":"g2"}`, topic("", "get", "accepted"), 0, "g2"},
		{"get with an ignored payload", topic("", "get", ""), `not json`, topic("", "get", "accepted"), 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.svc.HandleMQTT(ctx, tc.topic, []byte(tc.payload))
			msgs := f.pub.take()
			if len(msgs) != 1 || msgs[0].Topic != tc.wantTopic {
				t.Fatalf("published %v, want one message on %s", topicsOf(msgs), tc.wantTopic)
			}
			var body struct {
				Code        int    `json:"code"`
				Message     string `json:"message"`
				ClientToken string `json:"clientToken"`
				Version     int64  `json:"version"`
				Timestamp   int64  `json:"timestamp"`
			}
			if err := json.Unmarshal(msgs[0].Payload, &body); err != nil {
				t.Fatal(err)
			}
			if body.Code != tc.wantCode || body.ClientToken != tc.wantToken || body.Timestamp != f.clock.Unix() {
				t.Errorf("body %s: want code %d, token %q", msgs[0].Payload, tc.wantCode, tc.wantToken)
			}
		})
	}

	f.svc.HandleMQTT(ctx, topic("", "delete", ""), []byte(`{"clientToken":"d"}`))
	var del protocol.ShadowDeleted
	if !find(t, f.pub.take(), topic("", "delete", "accepted"), &del) || del.Version != 1 || del.ClientToken != "d" {
		t.Errorf("delete/accepted = %+v", del)
	}

	// Responses (the hub's own messages echoed back by the broker) and other
	// topics are ignored.
	for _, tp := range []string{topic("", "update", "accepted"), topic("", "update", "delta"), topic("", "get", "rejected"),
		"$aws/things/pump-7/shadow/list", "$aws/things/pump-7/jobs/get", "outpost/v1/devices/pump-7/telemetry"} {
		f.svc.HandleMQTT(ctx, tp, []byte(`{"state":{"desired":{"x":1}}}`))
	}
	if msgs := f.pub.take(); len(msgs) != 0 {
		t.Errorf("non-request topics got answers: %v", topicsOf(msgs))
	}
	if f.st.puts != 1 {
		t.Errorf("store written %d times, want 1", f.st.puts)
	}
}

func TestServiceOnChange(t *testing.T) {
	f := newFixture(t, "pump-7")
	var got []string
	f.svc.OnChange(func(deviceID, name string) { got = append(got, deviceID+"~"+name) })
	ctx := context.Background()
	f.mustUpdate(t, "pump-7", "workloads", `{"state":{"reported":{"x":1}}}`)
	if _, err := f.update(t, "pump-7", "workloads", `{"state":{"desired":{"x":1}},"version":9}`); err == nil {
		t.Fatal("update at a stale version was accepted")
	}
	if _, err := f.svc.Delete(ctx, "pump-7", "workloads"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Delete(ctx, "pump-7", "workloads"); err == nil {
		t.Fatal("second delete succeeded")
	}
	if want := []string{"pump-7~workloads", "pump-7~workloads"}; !slices.Equal(got, want) {
		t.Errorf("OnChange calls = %q, want %q (accepted update and delete only)", got, want)
	}
}
