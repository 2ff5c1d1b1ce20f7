package hub_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// TestServiceLogsOverMQTT asks a connected device for a service's logs
// through the REST API and answers as the device does.
func TestServiceLogsOverMQTT(t *testing.T) {
	h := startHub(t)
	pass := h.AddDevice(t, "pump-7")
	c := mustDial(t, h.MQTTAddr(), "pump-7", pass)
	c.subscribe(t, protocol.LogsRequestTopic("pump-7"))
	testutil.Eventually(t, 5*time.Second, func() error {
		var d struct{ Online bool }
		h.API(t, "GET", "/api/v1/devices/pump-7", nil, http.StatusOK, &d)
		if !d.Online {
			return errors.New("device not online yet")
		}
		return nil
	})

	type answer struct {
		status int
		body   []byte
		err    error
	}
	ask := func(path string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest("GET", h.HTTPURL()+path, nil)
			req.Header.Set("Authorization", "Bearer "+h.Token)
			resp, err := h.Client.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			ch <- answer{resp.StatusCode, b, err}
		}()
		return ch
	}
	respond := func(from int, v func(req protocol.LogsRequest) protocol.LogsResponse) protocol.LogsRequest {
		p := c.await(t, from, protocol.LogsRequestTopic("pump-7"))
		var req protocol.LogsRequest
		if err := json.Unmarshal(p.Payload, &req); err != nil {
			t.Fatalf("log request %s: %v", p.Payload, err)
		}
		if p.QoS != 1 {
			t.Errorf("log request at QoS %d, want 1", p.QoS)
		}
		b, _ := json.Marshal(v(req))
		if code := c.publish(t, protocol.LogsResponseTopic("pump-7"), b, ""); code != codeSuccess {
			t.Fatalf("publishing the answer: reason %#x", code)
		}
		return req
	}

	ch := ask("/api/v1/devices/pump-7/services/web/logs?tail=2&after=9")
	req := respond(0, func(req protocol.LogsRequest) protocol.LogsResponse {
		return protocol.LogsResponse{ID: req.ID, Service: req.Service, Last: 11,
			Lines: []protocol.LogLine{{Seq: 10, Time: 1, Line: "a"}, {Seq: 11, Time: 2, Line: "b"}}}
	})
	if req.Service != "web" || req.Tail != 2 || req.After != 9 {
		t.Errorf("request %+v", req)
	}
	a := <-ch
	var got protocol.LogsResponse
	if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil || got.Last != 11 || len(got.Lines) != 2 || got.Lines[1].Line != "b" {
		t.Fatalf("logs answer %d %s %v", a.status, a.body, a.err)
	}

	from := len(c.received())
	ch = ask("/api/v1/devices/pump-7/services/db/logs")
	respond(from, func(req protocol.LogsRequest) protocol.LogsResponse {
		return protocol.LogsResponse{ID: req.ID, Service: req.Service, Error: "no service db on this device"}
	})
	if a := <-ch; a.status != http.StatusNotFound || !json.Valid(a.body) || !strings.Contains(string(a.body), "no service db on this device") {
		t.Errorf("no such service: %d %s %v", a.status, a.body, a.err)
	}
}
