package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// testHub is a hub running in-process on free ports, logged in as admin.
type testHub struct{ *hubtest.Hub }

func startHub(t *testing.T) *testHub { return &testHub{hubtest.Start(t)} }

type point struct {
	Seq    uint64 `json:"seq"`
	Sensor string `json:"sensor"`
	Value  any    `json:"value"`
}

func (h *testHub) points(t *testing.T, id string) []point {
	t.Helper()
	var out struct{ Points []point }
	// until lies ahead: test points may be stamped in the current millisecond.
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	h.API(t, "GET", "/api/v1/devices/"+id+"/telemetry?since=48h&limit=10000&until="+until, nil, http.StatusOK, &out)
	return out.Points
}

func (h *testHub) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get(h.HTTPURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// mqttClient is a raw MQTT v5 client that records what it receives.
type mqttClient struct {
	*paho.Client
	mu   sync.Mutex
	got  []*paho.Publish
	errs chan error
}

func dial(t *testing.T, addr, clientID, user, pass string) (*mqttClient, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mc := &mqttClient{errs: make(chan error, 10)}
	mc.Client = paho.NewClient(paho.ClientConfig{
		Conn:     conn,
		ClientID: clientID,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			mc.mu.Lock()
			mc.got = append(mc.got, pr.Packet)
			mc.mu.Unlock()
			return true, nil
		}},
		OnClientError: func(err error) {
			select {
			case mc.errs <- err:
			default:
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := mc.Connect(ctx, &paho.Connect{
		ClientID: clientID, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass),
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("connack reason %#x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = mc.Disconnect(&paho.Disconnect{}) })
	return mc, nil
}

func mustDial(t *testing.T, addr, id, pass string) *mqttClient {
	t.Helper()
	c, err := dial(t, addr, id, id, pass)
	if err != nil {
		t.Fatalf("connecting as %s: %v", id, err)
	}
	return c
}

func (c *mqttClient) received() []*paho.Publish {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*paho.Publish(nil), c.got...)
}

// publish sends QoS 1 and returns the PUBACK reason code.
func (c *mqttClient) publish(t *testing.T, topic string, payload []byte, contentType string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: payload}
	if contentType != "" {
		p.Properties = &paho.PublishProperties{ContentType: contentType}
	}
	resp, err := c.Publish(ctx, p)
	if resp == nil {
		t.Fatalf("publishing to %s: %v", topic, err)
	}
	return resp.ReasonCode
}

func batch(device string, seqFirst uint64, values ...float64) []byte {
	b := &outpostv1.TelemetryBatch{Device: device, SeqFirst: seqFirst}
	now := time.Now().UnixMilli()
	for i, v := range values {
		b.Points = append(b.Points, &outpostv1.Point{Sensor: "temperature", TsUnixMs: now + int64(i), Value: &outpostv1.Point_Num{Num: v}})
	}
	out, err := protocol.EncodeTelemetry(b)
	if err != nil {
		panic(err)
	}
	return out
}

const (
	codeSuccess       = 0x00
	codeNotAuthorized = 0x87
	codeBadPayload    = 0x99
)

func TestDeviceAuthentication(t *testing.T) {
	h := startHub(t)
	pass := h.AddDevice(t, "pump-7")
	h.AddDevice(t, "pump-8")

	mustDial(t, h.MQTTAddr(), "pump-7", pass)
	tests := []struct {
		name, clientID, user, pass string
	}{
		{"wrong password", "pump-7", "pump-7", pass + "x"},
		{"other device's password", "pump-8", "pump-8", pass},
		{"unknown device", "ghost", "ghost", pass},
		{"client id differs from user", "pump-8", "pump-7", pass},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := dial(t, h.MQTTAddr(), tc.clientID, tc.user, tc.pass); err == nil {
				t.Fatal("connection was accepted")
			}
		})
	}
	if got, want := h.metric(t, "outpost_mqtt_auth_failures_total"), fmt.Sprintf("outpost_mqtt_auth_failures_total %d", len(tests)); got != want {
		t.Errorf("auth failure metric = %q, want %q", got, want)
	}
	// An empty password is refused before the hook even asks the store.
	if _, err := dial(t, h.MQTTAddr(), "pump-7", "pump-7", ""); err == nil {
		t.Error("connection without a password was accepted")
	}
}

func TestTelemetryStoredOnceOnRedelivery(t *testing.T) {
	h := startHub(t)
	c := mustDial(t, h.MQTTAddr(), "pump-7", h.AddDevice(t, "pump-7"))
	payload := batch("pump-7", 1, 20.5, 21, 21.5)
	for i := 0; i < 3; i++ {
		if code := c.publish(t, protocol.TelemetryTopic("pump-7"), payload, protocol.ContentTypeProtobuf); code != codeSuccess {
			t.Fatalf("publish %d: reason %#x", i, code)
		}
	}
	// An overlapping batch (seq 3..4) adds only seq 4.
	if code := c.publish(t, protocol.TelemetryTopic("pump-7"), batch("", 3, 99, 22), ""); code != codeSuccess {
		t.Fatalf("overlapping publish: reason %#x", code)
	}
	pts := h.points(t, "pump-7")
	if len(pts) != 4 {
		t.Fatalf("stored %d points, want 4: %+v", len(pts), pts)
	}
	for i, want := range []float64{20.5, 21, 21.5, 22} {
		if pts[i].Seq != uint64(i+1) || pts[i].Value != want {
			t.Errorf("point %d = %+v, want seq %d value %v", i, pts[i], i+1, want)
		}
	}
}

func TestDevicesAreIsolated(t *testing.T) {
	h := startHub(t)
	a := mustDial(t, h.MQTTAddr(), "dev-a", h.AddDevice(t, "dev-a"))
	b := mustDial(t, h.MQTTAddr(), "dev-b", h.AddDevice(t, "dev-b"))
	ctx := context.Background()

	// A tries to listen to everything and to B in particular; the broker
	// refuses those filters. A's own topic is allowed and used as a marker.
	for _, f := range []string{"#", "outpost/v1/devices/dev-b/#", "outpost/v1/devices/+/telemetry", "$aws/things/dev-b/#", "$share/g/outpost/v1/devices/dev-b/telemetry", "outpost/v1/devices/dev-a/#"} {
		_, _ = a.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
	}
	// A publishes as B: refused, nothing stored for B.
	if code := a.publish(t, protocol.TelemetryTopic("dev-b"), batch("dev-b", 1, 1), ""); code != codeNotAuthorized {
		t.Errorf("publish to B's topic: reason %#x, want %#x", code, codeNotAuthorized)
	}
	// A names B in a batch on its own topic: refused as a mismatch.
	if code := a.publish(t, protocol.TelemetryTopic("dev-a"), batch("dev-b", 1, 1), ""); code != codeBadPayload {
		t.Errorf("batch naming B on A's topic: reason %#x, want %#x", code, codeBadPayload)
	}
	if pts := h.points(t, "dev-b"); len(pts) != 0 {
		t.Fatalf("B has %d points written by A", len(pts))
	}
	if pts := h.points(t, "dev-a"); len(pts) != 0 {
		t.Fatalf("A stored the mismatched batch: %+v", pts)
	}

	// B publishes twice; after the second PUBACK the first has been fanned
	// out. Then A publishes a marker to itself: had the broker routed B's
	// message to A, it would be queued to A before the marker.
	for seq := uint64(1); seq <= 2; seq++ {
		if code := b.publish(t, protocol.TelemetryTopic("dev-b"), batch("dev-b", seq, 42), ""); code != codeSuccess {
			t.Fatalf("B's own publish: reason %#x", code)
		}
	}
	if code := a.publish(t, "outpost/v1/devices/dev-a/marker", []byte("m"), ""); code != codeSuccess {
		t.Fatalf("marker publish: reason %#x", code)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, p := range a.received() {
			if p.Topic == "outpost/v1/devices/dev-a/marker" {
				return nil
			}
		}
		return errors.New("A has not received its own marker")
	})
	for _, p := range a.received() {
		if strings.Contains(p.Topic, "dev-b") {
			t.Errorf("A received B's message on %s", p.Topic)
		}
	}
	if pts := h.points(t, "dev-b"); len(pts) != 2 {
		t.Errorf("B's own points: %d stored, want 2", len(pts))
	}
}

func TestBadTelemetryIsCountedAndRejected(t *testing.T) {
	h := startHub(t)
	c := mustDial(t, h.MQTTAddr(), "pump-7", h.AddDevice(t, "pump-7"))
	topic := protocol.TelemetryTopic("pump-7")
	tests := []struct {
		name, contentType string
		payload           []byte
		code              protocol.Code
	}{
		{"oversize", "", bytes.Repeat([]byte{'x'}, protocol.MaxPayloadBytes+1), protocol.CodeTooLarge},
		{"malformed protobuf", protocol.ContentTypeProtobuf, []byte{0xff, 0xff, 0xff, 0x01}, protocol.CodeMalformed},
		{"malformed json", "", []byte(`{"seq_first":1,"points":[`), protocol.CodeMalformed},
		{"bad sensor name", protocol.ContentTypeJSON, []byte(`{"seq_first":1,"points":[{"sensor":"bad name!","ts":"2026-01-01T00:00:00Z","value":1}]}`), protocol.CodeBadName},
		{"empty batch", "", []byte(`{"seq_first":1,"points":[]}`), protocol.CodeEmptyBatch},
		{"seq zero", "", []byte(`{"seq_first":0,"points":[{"sensor":"t","ts":"2026-01-01T00:00:00Z","value":1}]}`), protocol.CodeBadSeq},
	}
	rejected := map[protocol.Code]int{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code := c.publish(t, topic, tc.payload, tc.contentType); code != codeBadPayload {
				t.Fatalf("reason %#x, want %#x", code, codeBadPayload)
			}
			rejected[tc.code]++
			want := fmt.Sprintf(`outpost_ingest_rejected_total{code="%s"} %d`, tc.code, rejected[tc.code])
			if got := h.metric(t, "outpost_ingest_rejected_total"); !strings.Contains(got, want) {
				t.Errorf("metrics %q lack %q", got, want)
			}
		})
	}
	if pts := h.points(t, "pump-7"); len(pts) != 0 {
		t.Fatalf("bad payloads stored %d points", len(pts))
	}
	// The connection and the hub still work.
	if code := c.publish(t, topic, batch("pump-7", 1, 7), ""); code != codeSuccess {
		t.Fatalf("good publish after bad ones: reason %#x", code)
	}
	if pts := h.points(t, "pump-7"); len(pts) != 1 {
		t.Fatalf("stored %d points after good publish, want 1", len(pts))
	}
}

func TestPresence(t *testing.T) {
	h := startHub(t)
	pass := h.AddDevice(t, "pump-7")
	type dev struct {
		Online       bool       `json:"online"`
		LastSeen     *time.Time `json:"last_seen"`
		AgentVersion string     `json:"agent_version"`
		Spool        *struct {
			Points, Bytes, Dropped uint64
			Oldest                 *time.Time
		} `json:"spool"`
	}
	var d dev
	h.API(t, "GET", "/api/v1/devices/pump-7", nil, http.StatusOK, &d)
	if d.Online || d.LastSeen != nil {
		t.Fatalf("before connecting: %+v", d)
	}
	c := mustDial(t, h.MQTTAddr(), "pump-7", pass)
	oldest := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	birth, _ := protocol.EncodeStatus(&outpostv1.Status{State: outpostv1.Status_STATE_ONLINE, AgentVersion: "1.2.3",
		Spool: &outpostv1.SpoolStats{Points: 42, Bytes: 4096, Dropped: 3, OldestUnixMs: oldest.UnixMilli()}})
	if code := c.publish(t, protocol.StatusTopic("pump-7"), birth, ""); code != codeSuccess {
		t.Fatalf("birth message: reason %#x", code)
	}
	h.API(t, "GET", "/api/v1/devices/pump-7", nil, http.StatusOK, &d)
	if !d.Online || d.LastSeen == nil || d.AgentVersion != "1.2.3" {
		t.Fatalf("after connecting: %+v", d)
	}
	if sp := d.Spool; sp == nil || sp.Points != 42 || sp.Bytes != 4096 || sp.Dropped != 3 || sp.Oldest == nil || !sp.Oldest.Equal(oldest) {
		t.Fatalf("spool report not stored as sent: %+v", d.Spool)
	}
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		var d dev
		h.API(t, "GET", "/api/v1/devices/pump-7", nil, http.StatusOK, &d)
		if d.Online {
			return errors.New("still online")
		}
		return nil
	})
}

func TestDeleteDisconnectsDevice(t *testing.T) {
	h := startHub(t)
	pass := h.AddDevice(t, "pump-7")
	c := mustDial(t, h.MQTTAddr(), "pump-7", pass)
	h.API(t, "DELETE", "/api/v1/devices/pump-7", nil, http.StatusNoContent, nil)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("deleted device is still connected")
	}
	if _, err := dial(t, h.MQTTAddr(), "pump-7", "pump-7", pass); err == nil {
		t.Fatal("deleted device could reconnect")
	}
}
