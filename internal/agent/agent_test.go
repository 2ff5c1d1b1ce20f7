package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// allSeqs returns the seqs of every point the broker got, sorted, and
// fails on a batch of more than 5 points.
func allSeqs(t *testing.T, b *brokertest.Broker) []uint64 {
	t.Helper()
	var out []uint64
	for _, bt := range received(t, b) {
		if n := len(bt.GetPoints()); n == 0 || n > 5 {
			t.Fatalf("batch has %d points, want 1 to 5", n)
		}
		for i := range bt.GetPoints() {
			out = append(out, bt.GetSeqFirst()+uint64(i))
		}
	}
	slices.Sort(out)
	return out
}

// checkDense fails unless seqs is exactly first, first+1, ... (each once).
func checkDense(t *testing.T, seqs []uint64, first uint64) {
	t.Helper()
	for i, s := range seqs {
		if s != first+uint64(i) {
			t.Fatalf("seqs received: %v; want each of %d..%d once", seqs, first, first+uint64(len(seqs))-1)
		}
	}
}

func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s = %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s:\n%s", name, body)
	return 0
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
		"# TYPE outpost_agent_spool_points gauge\n",
		"outpost_agent_spool_dropped_total 0\n",
		"outpost_agent_spool_corrupt_resets_total 0\n",
		"# TYPE outpost_agent_spool_oldest_age_seconds gauge\n",
		"# TYPE outpost_agent_spool_commit_seconds_total counter\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if n := metricValue(t, body, "outpost_agent_spool_commits_total"); n < 1 {
		t.Errorf("spool commits = %v", n)
	}
	if n := metricValue(t, body, "outpost_agent_spool_file_bytes"); n <= 0 {
		t.Errorf("spool file bytes = %v", n)
	}
	st := r.a.Stats()
	if !st.Running || st.PointsCollected == 0 || st.SpoolCommits == 0 || st.NextSeq <= 1 || st.Connects != 1 {
		t.Errorf("stats = %+v", st)
	}

	// A clean stop delivers what the spool holds (the uplink's grace), then
	// the next run continues the sequence exactly: the seqs of both runs
	// together are 1..N, each once.
	r.shutdown(t)
	if st := r.a.Stats(); st.Running || st.SpoolPoints != 0 {
		t.Errorf("after stop: %+v, want stopped with an empty spool", st)
	}
	if m, ok := b.Retained(protocol.StatusTopic(device)); !ok {
		t.Error("no retained status after stop")
	} else if s, _ := protocol.DecodeStatus(m.Payload); s.GetState() != outpostv1.Status_STATE_OFFLINE {
		t.Errorf("retained status after stop = %v, want offline", s)
	}
	firstRun := allSeqs(t, b)
	checkDense(t, firstRun, 1)
	if uint64(len(firstRun)) != r.a.Stats().PointsCollected {
		t.Errorf("the hub got %d points, the agent stored %d", len(firstRun), r.a.Stats().PointsCollected)
	}

	r2 := start(t, testConfig(b.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(allSeqs(t, b)); n <= len(firstRun)+10 {
			return fmt.Errorf("%d points from the second run so far", n-len(firstRun))
		}
		return nil
	})
	r2.shutdown(t)
	checkDense(t, allSeqs(t, b), 1)
}

// TestAgentKeepsUndeliveredPointsAcrossRestarts runs the agent while the
// hub is unreachable, stops it, and starts it again once the hub is back:
// every point the first run stored is delivered by the second.
func TestAgentKeepsUndeliveredPointsAcrossRestarts(t *testing.T) {
	b := brokertest.Start(t, "")
	b.Close()
	dataDir := t.TempDir()
	r := start(t, testConfig(b.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := r.a.Stats(); st.SpoolPoints < 30 {
			return fmt.Errorf("%d points in the spool", st.SpoolPoints)
		}
		return nil
	})
	r.shutdown(t)
	stored := r.a.Stats().PointsCollected
	if st := r.a.Stats(); st.SpoolPoints != int64(stored) || st.PointsAcked != 0 {
		t.Fatalf("after a run without the hub: %+v, want all %d points in the spool", st, stored)
	}

	b2 := brokertest.Start(t, b.Addr)
	r2 := start(t, testConfig(b2.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := r2.a.Stats(); st.PointsBacklog < stored || st.Draining {
			return fmt.Errorf("stats = %+v, want the first run's %d points delivered as backlog", st, stored)
		}
		return nil
	})
	r2.shutdown(t)
	if n := uint64(len(allSeqs(t, b2))); n < stored {
		t.Errorf("%d points delivered, want at least the %d of the first run", n, stored)
	}
	checkDense(t, allSeqs(t, b2), 1)
}

// TestAgentStartsOnACorruptSpool replaces the spool with garbage: the agent
// moves it aside, says so, and works.
func TestAgentStartsOnACorruptSpool(t *testing.T) {
	b := brokertest.Start(t, "")
	dataDir := t.TempDir()
	r := start(t, testConfig(b.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(received(t, b)); n < 3 {
			return fmt.Errorf("%d batches so far", n)
		}
		return nil
	})
	r.shutdown(t)
	before := allSeqs(t, b)
	if err := os.WriteFile(filepath.Join(dataDir, "spool.db"), []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}

	r2 := start(t, testConfig(b.URL), dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(allSeqs(t, b)); n < len(before)+10 {
			return fmt.Errorf("%d points since the restart", n-len(before))
		}
		return nil
	})
	st := r2.a.Stats()
	if st.SpoolCorruptResets != 1 || st.SpoolCorruptFile == "" {
		t.Errorf("stats = %+v, want one corrupt-file reset", st)
	}
	if _, err := os.Stat(st.SpoolCorruptFile); err != nil {
		t.Errorf("the corrupt file was not kept: %v", err)
	}
	_, body := get(t, "http://"+r2.a.HTTPAddr()+"/healthz")
	if !strings.Contains(body, `"spool_corrupt_file":`) {
		t.Errorf("/healthz does not mention the corrupt file: %s", body)
	}
	_, body = get(t, "http://"+r2.a.HTTPAddr()+"/metrics")
	if v := metricValue(t, body, "outpost_agent_spool_corrupt_resets_total"); v != 1 {
		t.Errorf("outpost_agent_spool_corrupt_resets_total = %v, want 1", v)
	}
	// The fresh spool numbers above everything the old one issued.
	after := allSeqs(t, b)[len(before):]
	if after[0] <= before[len(before)-1] {
		t.Errorf("after the reset seqs start at %d, but %d was issued before", after[0], before[len(before)-1])
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
