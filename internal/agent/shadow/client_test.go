package shadow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAgent records what a Client applies and publishes.
type fakeAgent struct {
	mu        sync.Mutex
	applied   []Settings
	published []published
	offline   bool
}

type published struct {
	topic   string
	payload map[string]any
}

func (f *fakeAgent) apply(_, next Settings) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, next)
}

func (f *fakeAgent) publish(_ context.Context, topic string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.offline {
		return errors.New("offline")
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return err
	}
	f.published = append(f.published, published{topic, m})
	return nil
}

func (f *fakeAgent) last() (Settings, []published) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s Settings
	if len(f.applied) > 0 {
		s = f.applied[len(f.applied)-1]
	}
	return s, append([]published(nil), f.published...)
}

func startClient(t *testing.T, path string, f *fakeAgent) *Client {
	t.Helper()
	c, err := New(Options{Config: testConfig(), LogLevel: slog.LevelInfo, Path: path, Apply: f.apply, Publish: f.publish})
	if err != nil {
		t.Fatal(err)
	}
	c.ApplySaved()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run = %v", err)
		}
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

func deliver(t *testing.T, c *Client, topic string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c.HandleMessage(topic, b)
}

func waitVersion(t *testing.T, c *Client, want int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if v, _ := c.Applied(); v != want {
			return fmt.Errorf("applied version %d, want %d", v, want)
		}
		return nil
	})
}

func TestClientFollowsTheShadow(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	f := &fakeAgent{}
	c := startClient(t, path, f)
	id := "pump-7"
	topic := func(op, suffix string) string { return protocol.ShadowTopic(id, "", op, suffix) }

	// Connected: it asks for the whole shadow.
	c.Connected(context.Background())
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, pubs := f.last(); len(pubs) == 0 || pubs[0].topic != topic("get", "") {
			return fmt.Errorf("published %v", pubs)
		}
		return nil
	})

	deliver(t, c, topic("get", "accepted"), protocol.ShadowDocument{Version: 5, State: map[string]any{
		"desired":  map[string]any{"sources": map[string]any{"temperature": map[string]any{"interval": "200ms"}}},
		"reported": map[string]any{"outpost_errors": map[string]any{"old": "gone"}},
	}})
	waitVersion(t, c, 5)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, pubs := f.last(); pubs[len(pubs)-1].topic != topic("update", "") {
			return errors.New("no report yet")
		}
		return nil
	})
	s, pubs := f.last()
	if s.Sources["temperature"].Interval.D() != 200*time.Millisecond {
		t.Errorf("applied %+v", s.Sources["temperature"])
	}
	rep := pubs[len(pubs)-1]
	if rep.topic != topic("update", "") {
		t.Fatalf("report on %s", rep.topic)
	}
	reported := rep.payload["state"].(map[string]any)["reported"].(map[string]any)
	if reported[KeyVersion] != float64(5) || reported[KeyErrors] != nil {
		t.Errorf("reported = %v; want version 5 and the old errors deleted (null)", reported)
	}
	if _, ok := reported[KeyErrors]; !ok {
		t.Errorf("reported = %v; want %s: null", reported, KeyErrors)
	}

	// A stale delta is ignored, a newer one applied on top.
	deliver(t, c, topic("update", "delta"), protocol.ShadowDeltaMessage{Version: 4, State: map[string]any{"log_level": "debug"}})
	deliver(t, c, topic("update", "delta"), protocol.ShadowDeltaMessage{Version: 7, State: map[string]any{"telemetry": map[string]any{"qos": 0.0}}})
	waitVersion(t, c, 7)
	s, _ = f.last()
	if s.LogLevel != slog.LevelInfo || s.QoS != 0 || s.Sources["temperature"].Interval.D() != 200*time.Millisecond {
		t.Errorf("settings after deltas = %+v", s)
	}

	// Saved: a new client (a restart) starts from version 7.
	st, err := Load(path)
	if err != nil || st.Version != 7 {
		t.Fatalf("saved %+v, %v", st, err)
	}
	f2 := &fakeAgent{offline: true}
	c2 := startClient(t, path, f2)
	if s, _ := f2.last(); s.QoS != 0 || s.Sources["temperature"].Interval.D() != 200*time.Millisecond {
		t.Errorf("ApplySaved applied %+v", s)
	}
	if v, _ := c2.Applied(); v != 7 {
		t.Errorf("restarted client at version %d", v)
	}

	// No shadow at all: agent.yaml applies.
	deliver(t, c, topic("get", "rejected"), protocol.ShadowError{Code: 404, Message: "No shadow exists with name: 'pump-7'"})
	waitVersion(t, c, 0)
	if s, _ := f.last(); !s.Equal(c.Baseline()) {
		t.Errorf("settings without a shadow = %+v", s)
	}
}

// TestClientFollowsDeletions checks that a desired key deleted at the hub
// returns to its agent.yaml value at once, through update/documents, even
// when a delta of the same version (which cannot carry deletions) arrives
// first.
func TestClientFollowsDeletions(t *testing.T) {
	f := &fakeAgent{}
	c := startClient(t, filepath.Join(t.TempDir(), FileName), f)
	topic := func(op, suffix string) string { return protocol.ShadowTopic("pump-7", "", op, suffix) }
	if !slices.Contains(c.Subscriptions(), topic("update", "documents")) {
		t.Fatalf("subscriptions %v lack update/documents", c.Subscriptions())
	}
	both := map[string]any{"log_level": "debug", "telemetry": map[string]any{"qos": 0.0}}
	deliver(t, c, topic("update", "delta"), protocol.ShadowDeltaMessage{Version: 3, State: both})
	waitVersion(t, c, 3)
	if s, _ := f.last(); s.LogLevel != slog.LevelDebug || s.QoS != 0 {
		t.Fatalf("settings after delta = %+v", s)
	}

	// log_level deleted (version 4): the delta names only what still
	// differs, the documents message has the whole desired state.
	onlyQoS := map[string]any{"telemetry": map[string]any{"qos": 0.0}}
	deliver(t, c, topic("update", "delta"), protocol.ShadowDeltaMessage{Version: 4, State: onlyQoS})
	deliver(t, c, topic("update", "documents"), protocol.ShadowDocumentsMessage{
		Current: protocol.ShadowDocument{Version: 4, State: map[string]any{"desired": onlyQoS}},
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if s, _ := f.last(); s.LogLevel != c.Baseline().LogLevel || s.QoS != 0 {
			return fmt.Errorf("settings = log level %v, qos %d; want agent.yaml's log level and qos 0", s.LogLevel, s.QoS)
		}
		return nil
	})

	// A documents message for a report (same desired, newer version)
	// changes nothing; an older one is ignored.
	f.mu.Lock()
	n := len(f.applied)
	f.mu.Unlock()
	deliver(t, c, topic("update", "documents"), protocol.ShadowDocumentsMessage{
		Current: protocol.ShadowDocument{Version: 5, State: map[string]any{"desired": onlyQoS}},
	})
	deliver(t, c, topic("update", "documents"), protocol.ShadowDocumentsMessage{
		Current: protocol.ShadowDocument{Version: 2, State: map[string]any{"desired": both}},
	})
	// A later delta proves both were processed (messages are handled in order).
	deliver(t, c, topic("update", "delta"), protocol.ShadowDeltaMessage{Version: 6, State: map[string]any{"log_level": "warn"}})
	waitVersion(t, c, 6)
	f.mu.Lock()
	applied := f.applied[n:]
	f.mu.Unlock()
	if len(applied) != 1 || applied[0].LogLevel != slog.LevelWarn || applied[0].QoS != 0 {
		t.Errorf("applied after the no-op documents: %+v; want only the version 6 change", applied)
	}
}
