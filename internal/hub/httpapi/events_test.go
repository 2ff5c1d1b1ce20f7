package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

type deviceEvent struct {
	Devices []struct {
		ID     string `json:"id"`
		Online bool   `json:"online"`
	} `json:"devices"`
}

func (e deviceEvent) String() string {
	var parts []string
	for _, d := range e.Devices {
		s := d.ID
		if d.Online {
			s += "(online)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// openDeviceEvents opens the device event stream with the token in the
// query, as the dashboard's EventSource does, and returns a function that
// reads the next devices event. The stream closes when the test ends.
func openDeviceEvents(t *testing.T, e *env, query string) func() deviceEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events/devices?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	return func() deviceEvent {
		t.Helper()
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if event != "devices" {
					t.Fatalf("data of event %q", event)
				}
				var v deviceEvent
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return deviceEvent{}
	}
}

func TestDeviceEvents(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	if _, err := e.devices.Add(ctx, "pump-1", map[string]string{"site": "a"}); err != nil {
		t.Fatal(err)
	}
	next := openDeviceEvents(t, e, "access_token="+url.QueryEscape(e.token))
	if got := next().String(); got != "pump-1" {
		t.Errorf("initial list %q, want pump-1", got)
	}
	if _, err := e.devices.Add(ctx, "pump-2", map[string]string{"site": "b"}); err != nil {
		t.Fatal(err)
	}
	if got := next().String(); got != "pump-1,pump-2" {
		t.Errorf("after adding: %q, want pump-1,pump-2", got)
	}
	if err := e.st.SetPresence(ctx, store.Presence{DeviceID: "pump-2", Online: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := next().String(); got != "pump-1,pump-2(online)" {
		t.Errorf("after pump-2 came online: %q, want pump-1,pump-2(online)", got)
	}
}

func TestDeviceEventsSelector(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	for id, site := range map[string]string{"pump-1": "a", "pump-2": "b"} {
		if _, err := e.devices.Add(ctx, id, map[string]string{"site": site}); err != nil {
			t.Fatal(err)
		}
	}
	next := openDeviceEvents(t, e, "label=site%3Db&access_token="+url.QueryEscape(e.token))
	if got := next().String(); got != "pump-2" {
		t.Errorf("initial list with site=b: %q, want pump-2", got)
	}
	resp, raw := e.do(t, "GET", "/api/v1/events/devices?label=site&access_token="+url.QueryEscape(e.token), "", nil)
	wantError(t, resp, raw, http.StatusBadRequest, "bad_request", "key=value")
}

// TestDeviceEventsAuth checks that the stream needs a valid token, in the
// header or the query, and that no other endpoint takes one in the query.
func TestDeviceEventsAuth(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, path, header string }{
		{"no token", "/api/v1/events/devices", ""},
		{"empty query token", "/api/v1/events/devices?access_token=", ""},
		{"bad query token", "/api/v1/events/devices?access_token=nope", ""},
		{"bad header wins over good query", "/api/v1/events/devices?access_token=" + url.QueryEscape(e.token), "nope"},
		{"query token elsewhere", "/api/v1/devices?access_token=" + url.QueryEscape(e.token), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, raw := e.do(t, "GET", tc.path, tc.header, nil)
			wantError(t, resp, raw, http.StatusUnauthorized, "unauthorized")
		})
	}
	t.Run("header token", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events/devices", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})
}

// TestDeviceEventsShutdown checks that an open stream does not hold up the
// server's graceful shutdown.
func TestDeviceEventsShutdown(t *testing.T) {
	e := newEnv(t, nil)
	next := openDeviceEvents(t, e, "access_token="+url.QueryEscape(e.token))
	next()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open event stream: %v", err)
	}
}

// TestDeviceEventsListFails checks that a stream whose first device list
// fails answers a plain JSON error instead of opening an empty stream.
func TestDeviceEventsListFails(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/events/devices?access_token="+url.QueryEscape(e.token), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Checked before reading: an opened stream's body never ends.
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d (Content-Type %q), want 500", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, raw, http.StatusInternalServerError, "internal")
}
