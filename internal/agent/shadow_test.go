package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/shadow"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// shadowHub is a hub running in-process on free ports, logged in as admin.
type shadowHub struct{ *hubtest.Hub }

func startShadowHub(t *testing.T) *shadowHub { return &shadowHub{hubtest.Start(t)} }

// setDesired patches the device's desired state and returns the new version.
func (h *shadowHub) setDesired(t *testing.T, id, desired string) int64 {
	t.Helper()
	var doc protocol.ShadowDocument
	h.API(t, "PATCH", "/api/v1/devices/"+id+"/shadow", json.RawMessage(desired), http.StatusOK, &doc)
	return doc.Version
}

// shadow returns the device's shadow; an empty one while there is none.
func (h *shadowHub) shadow(t *testing.T, id string) protocol.ShadowDocument {
	t.Helper()
	req, _ := http.NewRequest("GET", h.HTTPURL()+"/api/v1/devices/"+id+"/shadow", nil)
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := h.Client.Do(req)
	if err != nil {
		t.Fatalf("getting the shadow: %v", err)
	}
	defer resp.Body.Close()
	var doc protocol.ShadowDocument
	switch resp.StatusCode {
	case http.StatusNotFound:
	case http.StatusOK:
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("decoding the shadow: %v", err)
		}
	default:
		t.Fatalf("getting the shadow: status %d", resp.StatusCode)
	}
	return doc
}

// reported returns reported[path…] of the device's shadow, or nil.
func (h *shadowHub) reported(t *testing.T, id string, path ...string) any {
	t.Helper()
	var v any = h.shadow(t, id).State["reported"]
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// gate forwards TCP connections to a target while open; closed, it refuses
// new connections and cuts the existing ones: a hub out of reach.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex // guards open and conns
	open   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, open: true}
	g.wg.Go(g.serve)
	t.Cleanup(func() {
		ln.Close()
		g.set(false)
		g.wg.Wait()
	})
	return g
}

func (g *gate) url() string { return "mqtt://" + g.ln.Addr().String() }

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if !g.open {
			g.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", g.target)
		if err != nil {
			g.mu.Unlock()
			c.Close()
			continue
		}
		g.conns = append(g.conns, c, up)
		g.mu.Unlock()
		g.wg.Go(func() { io.Copy(up, c); up.Close() })
		g.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
	if !open {
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
	}
}

func shadowConfig(brokerURL, password string) config.Config {
	c := testConfig(brokerURL)
	c.MQTT.Password = password
	c.HTTP.Listen = ""
	c.Sources = []config.Source{{Name: "temperature", Type: config.SourceTypeSim, Interval: config.Duration(500 * time.Millisecond), Sim: &config.Sim{Kind: "temperature"}}}
	return c
}

// rate counts the points the agent collects per second over d.
func rate(a *Agent, d time.Duration) float64 {
	before := a.Stats().PointsCollected
	time.Sleep(d) // measuring a rate takes wall time
	return float64(a.Stats().PointsCollected-before) / d.Seconds()
}

func interval(t *testing.T, a *Agent) time.Duration {
	t.Helper()
	s, ok := a.collector.Settings("temperature")
	if !ok {
		t.Fatal("no temperature input")
	}
	return s.Interval
}

func TestAgentAppliesShadowHot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := startShadowHub(t)
	pw := h.AddDevice(t, device)
	dir := t.TempDir()
	r := start(t, shadowConfig(h.MQTTURL(), pw), dir)

	// The agent reports its settings on connect, the shadow empty.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.reported(t, device, "sources", "temperature", "interval"); got != "500ms" {
			return fmt.Errorf("reported interval = %v", got)
		}
		return nil
	})
	slow := rate(r.a, 2*time.Second)

	v := h.setDesired(t, device, `{"sources":{"temperature":{"interval":"50ms"}},"log_level":"debug"}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		rep := h.reported(t, device)
		m, _ := rep.(map[string]any)
		if m["outpost_version"] != float64(v) || h.reported(t, device, "sources", "temperature", "interval") != "50ms" {
			return fmt.Errorf("reported = %v, want version %d with interval 50ms", rep, v)
		}
		return nil
	})
	fast := rate(r.a, 2*time.Second)
	if fast < 4*slow || slow == 0 {
		t.Errorf("points per second: %.1f at 500ms, %.1f at 50ms; want at least 4 times more", slow, fast)
	}

	// A bad value is refused and reported; the previous one keeps running.
	h.setDesired(t, device, `{"sources":{"temperature":{"interval":"-1s"}}}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.reported(t, device, shadow.KeyErrors, "sources.temperature.interval"); got != "must be at least 10ms, got -1s" {
			return fmt.Errorf("reported error = %v", got)
		}
		return nil
	})
	if got := interval(t, r.a); got != 50*time.Millisecond {
		t.Errorf("interval = %s after a refused value, want 50ms", got)
	}
	if got := h.reported(t, device, "sources", "temperature", "interval"); got != "50ms" {
		t.Errorf("reported interval = %v after a refused value, want 50ms", got)
	}
	// Fixed: applied, and the error disappears.
	h.setDesired(t, device, `{"sources":{"temperature":{"interval":"100ms"}}}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.reported(t, device, shadow.KeyErrors); got != nil {
			return fmt.Errorf("reported errors = %v", got)
		}
		if got := interval(t, r.a); got != 100*time.Millisecond {
			return fmt.Errorf("interval = %s", got)
		}
		return nil
	})
}

func TestAgentShadowOfflineChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := startShadowHub(t)
	pw := h.AddDevice(t, device)
	g := startGate(t, h.MQTTAddr())
	dir := t.TempDir()
	cfg := shadowConfig(g.url(), pw)

	r := start(t, cfg, dir)
	v := h.setDesired(t, device, `{"sources":{"temperature":{"interval":"200ms"}}}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.reported(t, device, "outpost_version"); got != float64(v) {
			return fmt.Errorf("reported version = %v, want %d", got, v)
		}
		return nil
	})
	r.shutdown(t)

	// Changed twice while the agent is away.
	h.setDesired(t, device, `{"sources":{"temperature":{"interval":"300ms"}}}`)
	newest := h.setDesired(t, device, `{"sources":{"temperature":{"interval":"400ms"}},"telemetry":{"qos":0}}`)

	// Restarted without the hub: it runs what it applied last.
	g.set(false)
	r = start(t, cfg, dir)
	testutil.Eventually(t, 5*time.Second, func() error {
		if !r.a.Stats().Running {
			return fmt.Errorf("not running")
		}
		return nil
	})
	if got := interval(t, r.a); got != 200*time.Millisecond {
		t.Errorf("interval offline = %s, want the saved 200ms", got)
	}
	if r.a.Stats().Connected {
		t.Error("connected through a closed gate")
	}

	// The hub is back: the agent converges to the newest version.
	g.set(true)
	testutil.Eventually(t, 15*time.Second, func() error {
		if got := h.reported(t, device, "outpost_version"); got != float64(newest) {
			return fmt.Errorf("reported version = %v, want %d", got, newest)
		}
		if got := interval(t, r.a); got != 400*time.Millisecond {
			return fmt.Errorf("interval = %s", got)
		}
		doc := h.shadow(t, device)
		if d := doc.State["delta"]; d != nil {
			return fmt.Errorf("delta = %v, want none", d)
		}
		return nil
	})
	st, err := shadow.Load(filepath.Join(dir, shadow.FileName))
	if err != nil || st.Version != newest {
		t.Errorf("saved state = %+v, %v; want version %d", st, err, newest)
	}
}
