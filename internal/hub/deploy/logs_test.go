package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// fakeBroker records publishes and delivers to the one subscription.
type fakeBroker struct {
	mu        sync.Mutex
	filter    string
	id        int
	fn        func(topic string, payload []byte)
	published []published
}

type published struct {
	topic   string
	payload []byte
	qos     byte
}

func (b *fakeBroker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if retain {
		return errors.New("a log request must not be retained")
	}
	b.published = append(b.published, published{topic, payload, qos})
	return nil
}

func (b *fakeBroker) Subscribe(filter string, id int, fn func(topic string, payload []byte)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.filter, b.id, b.fn = filter, id, fn
	return nil
}

// request waits for the n-th publish and returns it decoded.
func (b *fakeBroker) request(t *testing.T, n int) (string, protocol.LogsRequest, byte) {
	t.Helper()
	var p published
	testutil.Eventually(t, 5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.published) < n {
			return fmt.Errorf("%d publishes, want %d", len(b.published), n)
		}
		p = b.published[n-1]
		return nil
	})
	var req protocol.LogsRequest
	if err := json.Unmarshal(p.payload, &req); err != nil {
		t.Fatal(err)
	}
	return p.topic, req, p.qos
}

func (b *fakeBroker) deliver(topic string, v any) {
	payload, _ := json.Marshal(v)
	b.mu.Lock()
	fn := b.fn
	b.mu.Unlock()
	fn(topic, payload)
}

func (b *fakeBroker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.published)
}

type logsResult struct {
	resp protocol.LogsResponse
	err  error
}

func TestLogs(t *testing.T) {
	br := &fakeBroker{}
	f := newFixture(t, 2, Options{Broker: br, LogsSubscriptionID: 7, LogsTimeout: time.Hour})
	if br.filter != protocol.LogsResponseFilter || br.id != 7 {
		t.Fatalf("subscribed to %q id %d", br.filter, br.id)
	}
	f.devices.mu.Lock()
	f.devices.m["dev-2"] = Device{ID: "dev-2", Online: false}
	f.devices.mu.Unlock()

	if _, err := f.svc.Logs(t.Context(), "nope", "web", 10, 0); !errors.Is(err, ErrDeviceNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	if _, err := f.svc.Logs(t.Context(), "dev-2", "web", 10, 0); !errors.Is(err, ErrDeviceOffline) {
		t.Errorf("offline device: %v", err)
	}
	if n := br.count(); n != 0 {
		t.Fatalf("%d requests published to devices that cannot answer", n)
	}

	ask := func() chan logsResult {
		ch := make(chan logsResult, 1)
		go func() {
			resp, err := f.svc.Logs(t.Context(), "dev-1", "web", 50, 7)
			ch <- logsResult{resp, err}
		}()
		return ch
	}
	// An answer.
	ch := ask()
	topic, req, qos := br.request(t, 1)
	if topic != protocol.LogsRequestTopic("dev-1") || qos != 1 || req.Service != "web" || req.Tail != 50 || req.After != 7 || !protocol.ValidLogsRequestID(req.ID) {
		t.Fatalf("request %s qos %d %+v", topic, qos, req)
	}
	// Answers from another device, to another id, or garbage are ignored.
	br.deliver(protocol.LogsResponseTopic("dev-2"), protocol.LogsResponse{ID: req.ID, Service: "web", Last: 666})
	br.deliver(protocol.LogsResponseTopic("dev-1"), protocol.LogsResponse{ID: "other", Service: "web", Last: 667})
	br.deliver(protocol.LogsResponseTopic("dev-1"), "not an object")
	want := protocol.LogsResponse{ID: req.ID, Service: "web", Lines: []protocol.LogLine{{Seq: 8, Time: 1, Line: "hello"}}, Last: 8}
	br.deliver(protocol.LogsResponseTopic("dev-1"), want)
	res := <-ch
	if res.err != nil || res.resp.Last != 8 || len(res.resp.Lines) != 1 || res.resp.Lines[0].Line != "hello" {
		t.Fatalf("Logs = %+v, %v", res.resp, res.err)
	}
	// A second answer to the same id after the first is dropped quietly.
	br.deliver(protocol.LogsResponseTopic("dev-1"), want)

	// The device has no such service.
	ch = ask()
	_, req, _ = br.request(t, 2)
	br.deliver(protocol.LogsResponseTopic("dev-1"), protocol.LogsResponse{ID: req.ID, Service: "web", Error: "no service web"})
	if res := <-ch; !errors.Is(res.err, ErrNoService) || res.resp.Error != "no service web" {
		t.Errorf("no such service: %+v, %v", res.resp, res.err)
	}
	f.svc.logs.mu.Lock()
	pending := len(f.svc.logs.pending)
	f.svc.logs.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d requests still pending", pending)
	}
}

func TestLogsTimeout(t *testing.T) {
	br := &fakeBroker{}
	f := newFixture(t, 1, Options{Broker: br, LogsTimeout: 20 * time.Millisecond})
	_, err := f.svc.Logs(t.Context(), "dev-1", "web", 0, 0)
	if !errors.Is(err, ErrDeviceTimeout) {
		t.Fatalf("Logs of a silent device: %v", err)
	}
	_, req, _ := br.request(t, 1)
	if req.Tail != 0 {
		t.Errorf("tail 0 sent as %d", req.Tail)
	}
}

func TestLogsWithoutBroker(t *testing.T) {
	f := newFixture(t, 1, Options{})
	if _, err := f.svc.Logs(t.Context(), "dev-1", "web", 0, 0); !errors.Is(err, ErrLogsUnavailable) {
		t.Errorf("Logs without a broker: %v", err)
	}
}
