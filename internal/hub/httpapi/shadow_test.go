package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/shadow"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/protocol"
)

// newShadowEnv is newEnv with the shadow endpoints mounted over a real
// shadow service.
func newShadowEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	devices := device.NewService(st, tokenTTL, logger)
	authSvc, err := auth.NewService(st, auth.NewIssuer(apiKey, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := auth.HashPassword(adminPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, adminUser, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Devices: devices, Auth: authSvc, Telemetry: st, Shadows: shadow.NewService(st, nil, logger, nil),
		Ready: st.Ping, MQTTPort: mqttPort, Logger: logger,
	}))
	t.Cleanup(srv.Close)
	e := &env{srv: srv, client: srv.Client(), st: st, devices: devices}
	e.token = e.login(t)
	return e
}

// shadowCall sends a shadow request with a raw body and optional If-Match.
func (e *env) shadowCall(t *testing.T, method, path, body, ifMatch string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

type shadowJSON struct {
	State struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
		Delta    map[string]any `json:"delta"`
	} `json:"state"`
	Metadata  map[string]any `json:"metadata"`
	Version   int64          `json:"version"`
	Timestamp int64          `json:"timestamp"`
}

func wantShadow(t *testing.T, resp *http.Response, raw []byte, version int64) shadowJSON {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s, want 200", resp.StatusCode, raw)
	}
	var doc shadowJSON
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	if doc.Version != version {
		t.Errorf("version = %d, want %d (%s)", doc.Version, version, raw)
	}
	if etag := resp.Header.Get("ETag"); etag != `"`+itoa(version)+`"` {
		t.Errorf("ETag = %q, want the version %d", etag, version)
	}
	if doc.Timestamp == 0 {
		t.Errorf("no timestamp in %s", raw)
	}
	return doc
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestShadowREST(t *testing.T) {
	e := newShadowEnv(t)
	e.addDevice(t, "pump-7", nil)
	const path = "/api/v1/devices/pump-7/shadow"

	resp, raw := e.shadowCall(t, "GET", path, "", "")
	wantError(t, resp, raw, 404, "not_found", "No shadow exists with name: 'pump-7'")

	resp, raw = e.shadowCall(t, "PATCH", path, `{"sources":{"temperature":{"interval":"200ms"}},"log":{"level":"info"}}`, "")
	doc := wantShadow(t, resp, raw, 1)
	if got, _ := json.Marshal(doc.State.Desired); string(got) != `{"log":{"level":"info"},"sources":{"temperature":{"interval":"200ms"}}}` {
		t.Errorf("desired = %s", got)
	}
	if doc.State.Delta == nil || doc.State.Reported != nil || doc.Metadata["desired"] == nil {
		t.Errorf("document after the first PATCH: %s", raw)
	}

	resp, raw = e.shadowCall(t, "GET", path, "", "")
	wantShadow(t, resp, raw, 1)

	// If-Match: a matching version (in any of the accepted spellings)
	// applies, a stale one is a conflict.
	resp, raw = e.shadowCall(t, "PATCH", path, `{"log":null}`, "1")
	doc = wantShadow(t, resp, raw, 2)
	if _, ok := doc.State.Desired["log"]; ok {
		t.Errorf("null did not delete log: %s", raw)
	}
	resp, raw = e.shadowCall(t, "PATCH", path, `{"x":1}`, `W/"2"`)
	wantShadow(t, resp, raw, 3)
	resp, raw = e.shadowCall(t, "PATCH", path, `{"x":2}`, `"2"`)
	wantError(t, resp, raw, 409, "conflict", "Version conflict")
	resp, raw = e.shadowCall(t, "PATCH", path, `{"x":3}`, `*`)
	wantShadow(t, resp, raw, 4)

	fill := strings.Repeat("x", protocol.MaxShadowStateBytes)
	tests := []struct {
		name, body, ifMatch string
		status              int
		code                string
		msg                 string
	}{
		{"malformed", `{"x":`, "", 400, "bad_request", "Invalid JSON"},
		{"array", `[1]`, "", 400, "bad_request", "must be an object"},
		{"empty", ``, "", 400, "bad_request", "empty"},
		{"too deep", `{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}`, "", 400, "bad_request", "maximum is 6"},
		{"null in array", `{"a":[null]}`, "", 400, "bad_request", "Arrays"},
		{"bad If-Match", `{"x":1}`, "abc", 400, "bad_request", "If-Match"},
		{"state over the limit", `{"blob":"` + fill + `"}`, "", 413, "too_large", "exceeds the maximum size"},
		{"body over the limit", `{"blob":"` + strings.Repeat("x", protocol.MaxShadowRequestBytes) + `"}`, "", 413, "too_large", "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, raw := e.shadowCall(t, "PATCH", path, tc.body, tc.ifMatch)
			wantError(t, resp, raw, tc.status, tc.code, tc.msg)
		})
	}
	resp, raw = e.shadowCall(t, "GET", path, "", "")
	wantShadow(t, resp, raw, 4)

	// Named shadows are separate.
	resp, raw = e.shadowCall(t, "PATCH", path+"?name=config", `{"a":1}`, "")
	wantShadow(t, resp, raw, 1)
	resp, raw = e.shadowCall(t, "GET", path+"?name=bad%20name", "", "")
	wantError(t, resp, raw, 400, "bad_request", "shadow name")

	// DELETE, then GET and DELETE are 404; PATCH continues the version.
	resp, raw = e.shadowCall(t, "DELETE", path, "", "")
	if resp.StatusCode != http.StatusNoContent || len(raw) != 0 {
		t.Fatalf("DELETE = %d %s, want 204", resp.StatusCode, raw)
	}
	resp, raw = e.shadowCall(t, "GET", path, "", "")
	wantError(t, resp, raw, 404, "not_found", "No shadow")
	resp, raw = e.shadowCall(t, "DELETE", path, "", "")
	wantError(t, resp, raw, 404, "not_found", "No shadow")
	resp, raw = e.shadowCall(t, "GET", path+"?name=config", "", "")
	wantShadow(t, resp, raw, 1)
	resp, raw = e.shadowCall(t, "PATCH", path, `{"a":1}`, "")
	wantShadow(t, resp, raw, 5)
}

func TestShadowRESTDevicesAndAuth(t *testing.T) {
	e := newShadowEnv(t)
	resp, raw := e.shadowCall(t, "PATCH", "/api/v1/devices/ghost/shadow", `{"a":1}`, "")
	wantError(t, resp, raw, 404, "not_found", "ghost")

	// Deleting a device deletes its shadows.
	e.addDevice(t, "pump-7", nil)
	resp, raw = e.shadowCall(t, "PATCH", "/api/v1/devices/pump-7/shadow", `{"a":1}`, "")
	wantShadow(t, resp, raw, 1)
	e.callJSON(t, "DELETE", "/api/v1/devices/pump-7", e.token, nil, http.StatusNoContent, nil)
	e.addDevice(t, "pump-7", nil)
	resp, raw = e.shadowCall(t, "GET", "/api/v1/devices/pump-7/shadow", "", "")
	wantError(t, resp, raw, 404, "not_found", "No shadow")

	for _, method := range []string{"GET", "PATCH", "DELETE"} {
		resp, raw := e.do(t, method, "/api/v1/devices/pump-7/shadow", "", nil)
		wantError(t, resp, raw, 401, "unauthorized")
	}
	resp, raw = e.do(t, "PUT", "/api/v1/devices/pump-7/shadow", e.token, map[string]any{"a": 1})
	wantError(t, resp, raw, 405, "method_not_allowed")
}
