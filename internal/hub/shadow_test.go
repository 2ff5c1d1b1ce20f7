package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// subscribe subscribes c to filters at QoS 1 and returns the SUBACK codes.
func (c *mqttClient) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := c.Subscribe(ctx, sub)
	if ack == nil {
		t.Fatalf("subscribing to %v: %v", filters, err)
	}
	return ack.Reasons
}

// request publishes payload to the shadow operation topic of id/name and
// returns the first message that then arrives on its accepted or rejected
// topic, decoded into a map, and which of the two it was.
func (c *mqttClient) request(t *testing.T, id, name, op, payload string) (map[string]any, string) {
	t.Helper()
	from := len(c.received())
	if code := c.publish(t, protocol.ShadowTopic(id, name, op, ""), []byte(payload), ""); code != codeSuccess {
		t.Fatalf("publishing %s request: reason %#x", op, code)
	}
	accepted := protocol.ShadowTopic(id, name, op, protocol.ShadowAccepted)
	rejected := protocol.ShadowTopic(id, name, op, protocol.ShadowRejected)
	p := c.await(t, from, accepted, rejected)
	return decode(t, p.Payload), p.Topic[strings.LastIndexByte(p.Topic, '/')+1:]
}

// await returns the first message received at index from or later on one
// of the topics.
func (c *mqttClient) await(t *testing.T, from int, topics ...string) *paho.Publish {
	t.Helper()
	var found *paho.Publish
	testutil.Eventually(t, 5*time.Second, func() error {
		got := c.received()
		for _, p := range got[min(from, len(got)):] {
			for _, tp := range topics {
				if p.Topic == tp {
					found = p
					return nil
				}
			}
		}
		return fmt.Errorf("nothing on %v yet", topics)
	})
	return found
}

func decode(t *testing.T, payload []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", payload, err)
	}
	return m
}

// js renders a decoded value as compact JSON.
func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// shadowREST calls the shadow REST API and returns the status and body.
func (h *testHub) shadowREST(t *testing.T, method, id, query string, body string, header ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.HTTPURL()+"/api/v1/devices/"+id+"/shadow"+query, rd)
	req.Header.Set("Authorization", "Bearer "+h.Token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (h *testHub) shadowDoc(t *testing.T, id, query string) map[string]any {
	t.Helper()
	status, raw := h.shadowREST(t, "GET", id, query, "")
	if status != http.StatusOK {
		t.Fatalf("GET shadow of %s%s: %d %s", id, query, status, raw)
	}
	return decode(t, raw)
}

func TestShadowOverMQTT(t *testing.T) {
	h := startHub(t)
	const id = "pump-7"
	c := mustDial(t, h.MQTTAddr(), id, h.AddDevice(t, id))
	if codes := c.subscribe(t, "$aws/things/pump-7/shadow/#"); codes[0] > 2 {
		t.Fatalf("SUBACK %#x for the device's own shadow topics", codes[0])
	}
	topic := func(op, suffix string) string { return protocol.ShadowTopic(id, "", op, suffix) }

	// The device reports: accepted echoes the request with metadata and the
	// client token; documents carries the new shadow.
	from := len(c.received())
	body, result := c.request(t, id, "", "update", `{"state":{"reported":{"sources":{"temperature":{"interval":"1s"}}}},"clientToken":"r-1"}`)
	if result != "accepted" || body["version"] != json.Number("1") || body["clientToken"] != "r-1" {
		t.Fatalf("first update: %s %s", result, js(body))
	}
	if got := js(body["state"]); got != `{"reported":{"sources":{"temperature":{"interval":"1s"}}}}` {
		t.Errorf("accepted state = %s", got)
	}
	ts := body["timestamp"].(json.Number)
	if got, want := js(body["metadata"]), `{"reported":{"sources":{"temperature":{"interval":{"timestamp":`+ts.String()+`}}}}}`; got != want {
		t.Errorf("accepted metadata = %s, want %s", got, want)
	}
	docs := decode(t, c.await(t, from, topic("update", "documents")).Payload)
	if _, hasPrev := docs["previous"]; hasPrev || js(docs["current"].(map[string]any)["version"]) != "1" {
		t.Errorf("documents of the first update = %s", js(docs))
	}

	// An operator changes desired over REST: the device gets the delta.
	from = len(c.received())
	status, raw := h.shadowREST(t, "PATCH", id, "", `{"sources":{"temperature":{"interval":"200ms"}}}`)
	if status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", status, raw)
	}
	delta := decode(t, c.await(t, from, topic("update", "delta")).Payload)
	if js(delta["state"]) != `{"sources":{"temperature":{"interval":"200ms"}}}` || delta["version"] != json.Number("2") {
		t.Errorf("delta = %s", js(delta))
	}
	if m := js(delta["metadata"]); !strings.HasPrefix(m, `{"sources":{"temperature":{"interval":{"timestamp":`) {
		t.Errorf("delta metadata = %s", m)
	}
	docs = decode(t, c.await(t, from, topic("update", "documents")).Payload)
	if js(docs["previous"].(map[string]any)["version"]) != "1" || js(docs["current"].(map[string]any)["version"]) != "2" {
		t.Errorf("documents = %s", js(docs))
	}

	// get returns the whole document with the delta.
	body, result = c.request(t, id, "", "get", `{"clientToken":"g-1"}`)
	if result != "accepted" || body["clientToken"] != "g-1" || body["version"] != json.Number("2") {
		t.Fatalf("get: %s %s", result, js(body))
	}
	want := `{"delta":{"sources":{"temperature":{"interval":"200ms"}}},"desired":{"sources":{"temperature":{"interval":"200ms"}}},"reported":{"sources":{"temperature":{"interval":"1s"}}}}`
	if got := js(body["state"]); got != want {
		t.Errorf("get state = %s, want %s", got, want)
	}

	// Refused updates leave the shadow as it was.
	big := `{"state":{"reported":{"blob":"` + strings.Repeat("x", protocol.MaxShadowStateBytes) + `"}}}`
	tests := []struct {
		name, payload string
		code          string
		message       string
		token         string
	}{
		{"stale version", `{"state":{"desired":{"x":1}},"version":1,"clientToken":"stale"}`, "409", "Version conflict", "stale"},
		{"malformed JSON", `{"state":{"desired":`, "400", "Invalid JSON", ""},
		{"no state", `{"clientToken":"n"}`, "400", "Missing required node: state", "n"},
		{"desired not an object", `{"state":{"desired":"on"}}`, "400", "Desired node must be an object", ""},
		{"too deep", `{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`, "400", "maximum is 6", ""},
		{"payload over the limit", `{"state":{"reported":{"blob":"` + strings.Repeat("x", protocol.MaxShadowRequestBytes) + `"}}}`, "413", "exceeds the maximum size", ""},
		{"state over the limit", big, "413", "exceeds the maximum size", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, result := c.request(t, id, "", "update", tc.payload)
			if result != "rejected" {
				t.Fatalf("result %s: %s", result, js(body))
			}
			if js(body["code"]) != tc.code || !strings.Contains(fmt.Sprint(body["message"]), tc.message) {
				t.Errorf("rejection = %s, want code %s and %q", js(body), tc.code, tc.message)
			}
			if tok, _ := body["clientToken"].(string); tok != tc.token {
				t.Errorf("clientToken = %q, want %q", tok, tc.token)
			}
			if _, ok := body["timestamp"]; !ok {
				t.Errorf("rejection without timestamp: %s", js(body))
			}
		})
	}
	if doc := h.shadowDoc(t, id, ""); doc["version"] != json.Number("2") {
		t.Errorf("version after refused updates = %v, want 2", doc["version"])
	}

	// The device catches up with a versioned update; null deletes.
	body, result = c.request(t, id, "", "update", `{"state":{"reported":{"sources":{"temperature":{"interval":"200ms"}}},"desired":{"sources":null}},"version":2}`)
	if result != "accepted" || body["version"] != json.Number("3") {
		t.Fatalf("versioned update: %s %s", result, js(body))
	}
	doc := h.shadowDoc(t, id, "")
	if got := js(doc["state"]); got != `{"reported":{"sources":{"temperature":{"interval":"200ms"}}}}` {
		t.Errorf("state after null delete = %s", got)
	}

	// delete, then get fails, then an update continues the version.
	body, result = c.request(t, id, "", "delete", `{"clientToken":"d-1"}`)
	if result != "accepted" || body["version"] != json.Number("3") || body["clientToken"] != "d-1" {
		t.Fatalf("delete: %s %s", result, js(body))
	}
	body, result = c.request(t, id, "", "get", "")
	if result != "rejected" || js(body["code"]) != "404" || body["message"] != "No shadow exists with name: 'pump-7'" {
		t.Fatalf("get after delete: %s %s", result, js(body))
	}
	body, result = c.request(t, id, "", "delete", "")
	if result != "rejected" || js(body["code"]) != "404" {
		t.Errorf("second delete: %s %s", result, js(body))
	}
	body, result = c.request(t, id, "", "update", `{"state":{"reported":{"on":true}}}`)
	if result != "accepted" || body["version"] != json.Number("4") {
		t.Errorf("update after delete: %s %s, want version 4", result, js(body))
	}
	if got := h.metric(t, "outpost_shadow_rejected_total"); !strings.Contains(got, `outpost_shadow_rejected_total{code="409",op="update"} 1`) {
		t.Errorf("rejection metrics:\n%s", got)
	}
}

func TestShadowNamedOverMQTT(t *testing.T) {
	h := startHub(t)
	const id = "pump-7"
	c := mustDial(t, h.MQTTAddr(), id, h.AddDevice(t, id))
	c.subscribe(t, "$aws/things/pump-7/shadow/name/config/#", "$aws/things/pump-7/shadow/update/#")

	body, result := c.request(t, id, "config", "update", `{"state":{"desired":{"level":"debug"}}}`)
	if result != "accepted" || body["version"] != json.Number("1") {
		t.Fatalf("named update: %s %s", result, js(body))
	}
	body, result = c.request(t, id, "config", "get", "")
	if result != "accepted" || js(body["state"]) != `{"delta":{"level":"debug"},"desired":{"level":"debug"}}` {
		t.Errorf("named get: %s %s", result, js(body))
	}
	for _, p := range c.received() {
		if strings.HasPrefix(p.Topic, "$aws/things/pump-7/shadow/update/") {
			t.Errorf("the named update published on the classic topic %s", p.Topic)
		}
	}
	if status, raw := h.shadowREST(t, "GET", id, "", ""); status != http.StatusNotFound {
		t.Errorf("classic shadow over REST: %d %s, want 404", status, raw)
	}
	if doc := h.shadowDoc(t, id, "?name=config"); doc["version"] != json.Number("1") {
		t.Errorf("named shadow over REST: %s", js(doc))
	}
	// A name outside the allowed characters is a 400 over REST.
	if status, raw := h.shadowREST(t, "GET", id, "?name=bad%20name", ""); status != http.StatusBadRequest {
		t.Errorf("bad name over REST: %d %s", status, raw)
	}
}

// TestShadowIsolation: device B can neither read nor write A's shadow, nor
// forge the hub's responses on its own topics.
func TestShadowIsolation(t *testing.T) {
	h := startHub(t)
	a := mustDial(t, h.MQTTAddr(), "dev-a", h.AddDevice(t, "dev-a"))
	b := mustDial(t, h.MQTTAddr(), "dev-b", h.AddDevice(t, "dev-b"))
	a.subscribe(t, "$aws/things/dev-a/shadow/#")
	if _, result := a.request(t, "dev-a", "", "update", `{"state":{"reported":{"secret":42}}}`); result != "accepted" {
		t.Fatal("A's own update was not accepted")
	}

	for _, f := range []string{"$aws/things/dev-a/shadow/#", "$aws/things/dev-a/shadow/get/accepted", "$aws/things/+/shadow/#"} {
		if codes := b.subscribe(t, f); codes[0] != codeNotAuthorized {
			t.Errorf("B subscribing to %s: SUBACK %#x, want %#x", f, codes[0], codeNotAuthorized)
		}
	}
	b.subscribe(t, "$aws/things/dev-b/shadow/#")
	for _, tp := range []string{
		protocol.ShadowTopic("dev-a", "", "update", ""),
		protocol.ShadowTopic("dev-a", "", "get", ""),
		protocol.ShadowTopic("dev-a", "", "delete", ""),
		protocol.ShadowTopic("dev-a", "config", "update", ""),
		// B may not forge responses, not even on its own topics.
		protocol.ShadowTopic("dev-b", "", "update", "accepted"),
		protocol.ShadowTopic("dev-b", "", "update", "delta"),
	} {
		if code := b.publish(t, tp, []byte(`{"state":{"reported":{"secret":0}}}`), ""); code != codeNotAuthorized {
			t.Errorf("B publishing to %s: PUBACK %#x, want %#x", tp, code, codeNotAuthorized)
		}
	}
	// A request on B's own shadow is answered: B's earlier publishes have
	// been handled by then.
	if body, result := b.request(t, "dev-b", "", "get", ""); result != "rejected" || js(body["code"]) != "404" {
		t.Errorf("B's own get: %s %s", result, js(body))
	}
	for _, p := range b.received() {
		if strings.Contains(p.Topic, "dev-a") || bytes.Contains(p.Payload, []byte("secret")) {
			t.Errorf("B received %s: %s", p.Topic, p.Payload)
		}
		if strings.HasSuffix(p.Topic, "/update/accepted") || strings.HasSuffix(p.Topic, "/update/delta") {
			t.Errorf("B's forged response was delivered: %s", p.Topic)
		}
	}
	doc := h.shadowDoc(t, "dev-a", "")
	if doc["version"] != json.Number("1") || js(doc["state"]) != `{"reported":{"secret":42}}` {
		t.Errorf("A's shadow after B's attempts: %s", js(doc))
	}
	if status, _ := h.shadowREST(t, "GET", "dev-a", "?name=config", ""); status != http.StatusNotFound {
		t.Errorf("B created A's named shadow (GET status %d)", status)
	}
}

// TestShadowConcurrentRESTAndMQTT: updates from the device and from the
// API race; every one of them lands.
func TestShadowConcurrentRESTAndMQTT(t *testing.T) {
	h := startHub(t)
	const id, n = "pump-7", 20
	c := mustDial(t, h.MQTTAddr(), id, h.AddDevice(t, id))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			if code := c.publish(t, protocol.ShadowTopic(id, "", "update", ""), fmt.Appendf(nil, `{"state":{"reported":{"r%d":%d}}}`, i, i), ""); code != codeSuccess {
				t.Errorf("device update %d: reason %#x", i, code)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			if status, raw := h.shadowREST(t, "PATCH", id, "", fmt.Sprintf(`{"d%d":%d}`, i, i)); status != http.StatusOK {
				t.Errorf("API update %d: %d %s", i, status, raw)
			}
		}
	}()
	wg.Wait()
	// The device's updates are handled after their PUBACK: wait for the last.
	testutil.Eventually(t, 5*time.Second, func() error {
		doc := h.shadowDoc(t, id, "")
		if v := js(doc["version"]); v != fmt.Sprint(2*n) {
			return fmt.Errorf("version %s", v)
		}
		st := doc["state"].(map[string]any)
		if d, r := len(st["desired"].(map[string]any)), len(st["reported"].(map[string]any)); d != n || r != n {
			return fmt.Errorf("%d desired and %d reported keys", d, r)
		}
		return nil
	})
}
