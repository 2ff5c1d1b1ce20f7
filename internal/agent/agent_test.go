package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const device = "pump-7"

func testConfig(brokerURL string) config.Config {
	c := config.Default()
	c.DeviceID = device
	c.MQTT.URL = brokerURL
	c.MQTT.Password = "secret"
	c.MQTT.BackoffMin = config.Duration(10 * time.Millisecond)
	c.MQTT.BackoffMax = config.Duration(50 * time.Millisecond)
	c.Telemetry.BatchMaxPoints = 5
	c.Telemetry.BatchMaxDelay = config.Duration(20 * time.Millisecond)
	for i := range c.Sources {
		c.Sources[i].Interval = config.Duration(10 * time.Millisecond)
	}
	c.HTTP.Listen = "127.0.0.1:0"
	return c
}

type running struct {
	a    *Agent
	stop context.CancelFunc
	done chan struct{}
	err  error
}

// start runs an agent and stops it when the test ends.
func start(t *testing.T, cfg config.Config, dataDir string) *running {
	t.Helper()
	a, err := New(cfg, Options{DataDir: dataDir, Version: "1.2.3", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, stop: cancel, done: make(chan struct{})}
	go func() {
		r.err = a.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *running) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if r.err != nil {
		t.Fatalf("Run = %v", r.err)
	}
}

// received decodes what the broker got from the device.
func received(t *testing.T, b *brokertest.Broker) []*outpostv1.TelemetryBatch {
	t.Helper()
	var out []*outpostv1.TelemetryBatch
	for _, m := range b.Published(protocol.TelemetryTopic(device)) {
		bt, err := protocol.DecodeTelemetry(m.Payload, m.ContentType, device, time.Now())
		if err != nil {
			t.Fatalf("the hub would refuse a batch: %v", err)
		}
		out = append(out, bt)
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAgentEndToEnd(t *testing.T) {
	b := brokertest.Start(t, "")
	dataDir := t.TempDir()
	r := start(t, testConfig(b.URL), dataDir)

	testutil.Eventually(t, 10*time.Second, func() error {
		sensors := map[string]bool{}
		for _, bt := range received(t, b) {
			for _, p := range bt.GetPoints() {
				sensors[p.GetSensor()] = true
			}
		}
		if len(sensors) != 3 || r.a.Stats().BatchesAcked < 5 {
			return fmt.Errorf("sensors so far %v, batches acked %d", sensors, r.a.Stats().BatchesAcked)
		}
		return nil
	})
	// Within one run the agent numbers points without gaps.
	batches := received(t, b)
	next := batches[0].GetSeqFirst()
	for _, bt := range batches {
		if bt.GetSeqFirst() != next {
			t.Fatalf("batch seq_first = %d, want %d", bt.GetSeqFirst(), next)
		}
		if n := len(bt.GetPoints()); n == 0 || n > 5 {
			t.Fatalf("batch has %d points, want 1 to 5", n)
		}
		next += uint64(len(bt.GetPoints()))
	}

	base := "http://" + r.a.HTTPAddr()
	code, body := get(t, base+"/healthz")
	var h health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h.Status != "ok" || !h.Connected || h.DeviceID != device || h.LastPublish == nil {
		t.Errorf("/healthz = %d %s (%v)", code, body, err)
	}
	code, body = get(t, base+"/metrics")
	if code != 200 {
		t.Errorf("/metrics = %d", code)
	}
	for _, want := range []string{
		"# TYPE outpost_agent_batches_acked_total counter\n",
		"outpost_agent_mqtt_connected 1\n",
		`outpost_agent_info{version="1.2.3",device_id="pump-7"} 1`,
		"outpost_agent_batches_rejected_total 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	st := r.a.Stats()
	if !st.Running || st.PointsCollected == 0 || st.BatchesCreated < st.BatchesAcked || st.Connects != 1 {
		t.Errorf("stats = %+v", st)
	}

	// Stop, then start again on the same data directory: the new run must
	// continue above every seq of the first one, never reuse one.
	r.shutdown(t)
	if r.a.Stats().Running {
		t.Error("Running after Run returned")
	}
	if m, ok := b.Retained(protocol.StatusTopic(device)); !ok {
		t.Error("no retained status after stop")
	} else if s, _ := protocol.DecodeStatus(m.Payload); s.GetState() != outpostv1.Status_STATE_OFFLINE {
		t.Errorf("retained status after stop = %v, want offline", s)
	}
	var maxFirstRun uint64
	for _, bt := range received(t, b) {
		maxFirstRun = max(maxFirstRun, bt.GetSeqFirst()+uint64(len(bt.GetPoints()))-1)
	}
	before := len(received(t, b))

	start(t, testConfig(b.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(received(t, b)); n <= before {
			return fmt.Errorf("no batch from the second run yet")
		}
		return nil
	})
	if first := received(t, b)[before].GetSeqFirst(); first <= maxFirstRun {
		t.Fatalf("second run started at seq %d, but the first run used up to %d", first, maxFirstRun)
	}
}

func TestAgentStartIsAllOrNothing(t *testing.T) {
	t.Run("http address in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := testConfig("mqtt://127.0.0.1:1") // never reached
		cfg.HTTP.Listen = ln.Addr().String()
		a, err := New(cfg, Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "local HTTP server") {
			t.Fatalf("Run = %v, want an HTTP listen error", err)
		}
	})
	t.Run("data directory in use", func(t *testing.T) {
		b := brokertest.Start(t, "")
		dir := t.TempDir()
		start(t, testConfig(b.URL), dir)
		testutil.Eventually(t, 5*time.Second, func() error {
			if !b.Connected(device) {
				return fmt.Errorf("first agent not connected yet")
			}
			return nil
		})
		a, err := New(testConfig(b.URL), Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "another agent") {
			t.Fatalf("Run = %v, want a lock error", err)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Telemetry.QoS = 7
	_, err := New(cfg, Options{})
	if err == nil {
		t.Fatal("New = nil error")
	}
	for _, want := range []string{"device_id", "telemetry.qos", "no data directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestHealthzWhenStopped(t *testing.T) {
	a, err := New(testConfig("mqtt://127.0.0.1:1"), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, a.Handler())
	code, body := get(t, srv+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"stopped"`) {
		t.Errorf("/healthz before Run = %d %s, want 503 stopped", code, body)
	}
}

func TestWriteMetricsEscapesLabels(t *testing.T) {
	var sb strings.Builder
	writeMetrics(&sb, "1.0 \"beta\"\n", "d", []metric{{"m_total", "counter", "help.", 2}})
	want := `outpost_agent_info{version="1.0 \"beta\"\n",device_id="d"} 1` + "\n# HELP m_total help.\n# TYPE m_total counter\nm_total 2\n"
	if !strings.HasSuffix(sb.String(), want) {
		t.Errorf("exposition =\n%s\nwant suffix\n%s", sb.String(), want)
	}
}
