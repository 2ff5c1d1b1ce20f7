package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/deployspec"
	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/deploy"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/protocol"
)

const webSpec = `# the web service
name: web
artifact: web@1.0.0
args: [--port, "8080"]
ports: [8080]
health:
  tcp: {port: 8080}
strategy: {batch: 100%%, health_timeout: 1m}
%s`

// postSpec posts a raw spec and returns the status and body.
func postSpec(t *testing.T, h *hubtest.Hub, spec string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", h.HTTPURL()+"/api/v1/deployments", strings.NewReader(spec))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := h.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type deploymentJSON struct {
	Name             string    `json:"name"`
	Artifact         string    `json:"artifact"`
	Revision         string    `json:"revision"`
	PreviousRevision string    `json:"previous_revision"`
	State            string    `json:"state"`
	Message          string    `json:"message"`
	Batch            int       `json:"batch"`
	Devices          int       `json:"devices"`
	Updated          int       `json:"updated"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func TestDeploymentsAPI(t *testing.T) {
	h := hubtest.Start(t)
	initKeys(t, h)
	for _, a := range []struct{ name, typ string }{{"web", "service"}, {"tool", "file"}} {
		if code, body := publish(t, h, a.name, "1.0.0", a.typ, "any", []byte("binary")); code != http.StatusCreated {
			t.Fatalf("publish %s: %d %s", a.name, code, body)
		}
	}
	h.AddDevice(t, "cam-1")
	h.AddDevice(t, "cam-2")

	// Refusals.
	code, body := postSpec(t, h, "name: Web!\nartifact: web\nstrategy: {batch: 0%, pause: soon}\n")
	var bad struct {
		Error    struct{ Code, Message string }
		Problems []string
	}
	if err := json.Unmarshal(body, &bad); err != nil || code != http.StatusBadRequest {
		t.Fatalf("invalid spec: %d %s", code, body)
	}
	if bad.Error.Code != "invalid_spec" || bad.Error.Message != "invalid deployment spec" || len(bad.Problems) < 4 {
		t.Errorf("invalid spec answer %s; want invalid_spec with every problem", body)
	}
	for _, key := range []string{"name: ", "artifact: ", "strategy.batch: ", "strategy.pause: "} {
		if !strings.Contains(strings.Join(bad.Problems, "\n"), key) {
			t.Errorf("problems %q do not name %q", bad.Problems, key)
		}
	}
	for _, tc := range []struct {
		spec   string
		status int
		code   string
		has    string
	}{
		{"name: web\nartifact: web@9.9.9\n", 400, "unknown_artifact", "web@9.9.9"},
		{"name: web\nartifact: tool@1.0.0\n", 400, "wrong_artifact_type", "tool@1.0.0"},
		{"", 400, "invalid_spec", ""},
		{"name: web\nartifact: web@1.0.0\nargs: [" + strings.Repeat(`"x",`, 20<<10) + "]\n", 413, "too_large", "bytes"},
		{strings.Repeat("#", httpapi.MaxSpecBytes+1), 413, "too_large", "262144"},
	} {
		code, body := postSpec(t, h, tc.spec)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(body, &e)
		if code != tc.status || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.has) {
			t.Errorf("spec %.40q: %d %s; want %d %s mentioning %q", tc.spec, code, body, tc.status, tc.code, tc.has)
		}
	}

	// Created, unchanged, updated.
	var applied struct {
		Result     string
		Deployment deploymentJSON
	}
	code, body = postSpec(t, h, fmt.Sprintf(webSpec, ""))
	if code != http.StatusCreated || json.Unmarshal(body, &applied) != nil {
		t.Fatalf("create: %d %s", code, body)
	}
	d := applied.Deployment
	if applied.Result != "created" || d.Name != "web" || d.Artifact != "web@1.0.0" || len(d.Revision) != deployspec.RevisionLen ||
		d.State != "rolling" || d.Devices != 2 || d.Updated != 0 || d.Batch != 1 || d.CreatedAt.IsZero() {
		t.Errorf("created %s", body)
	}
	rev1 := d.Revision
	code, body = postSpec(t, h, fmt.Sprintf(webSpec, ""))
	if code != http.StatusOK || json.Unmarshal(body, &applied) != nil || applied.Result != "unchanged" || applied.Deployment.Revision != rev1 {
		t.Errorf("same spec again: %d %s", code, body)
	}
	code, body = postSpec(t, h, fmt.Sprintf(webSpec, "env: {LOG_LEVEL: debug}\n"))
	if code != http.StatusOK || json.Unmarshal(body, &applied) != nil || applied.Result != "updated" || applied.Deployment.Revision == rev1 {
		t.Errorf("changed spec: %d %s", code, body)
	}
	rev2 := applied.Deployment.Revision

	// The devices' workloads shadows carry the new revision (the first
	// never completed, so there is no previous to hold them on).
	var sh protocol.ShadowDocument
	h.API(t, "GET", "/api/v1/devices/cam-1/shadow?name="+protocol.WorkloadsShadow, nil, http.StatusOK, &sh)
	desired, _ := sh.State["desired"].(map[string]any)
	ws, bad2 := protocol.DecodeWorkloadsDesired(desired[protocol.WorkloadsKey])
	if len(bad2) > 0 || ws["web"].Revision != rev2 || !strings.Contains(ws["web"].Spec, `"LOG_LEVEL":"debug"`) {
		t.Errorf("cam-1 workloads desired %v", desired)
	}

	var list struct{ Deployments []deploymentJSON }
	h.API(t, "GET", "/api/v1/deployments", nil, http.StatusOK, &list)
	if len(list.Deployments) != 1 || list.Deployments[0].Name != "web" || list.Deployments[0].Devices != 2 || list.Deployments[0].Revision != rev2 {
		t.Errorf("list %+v", list)
	}

	var st struct {
		Name, State string
		Devices     []struct {
			Device   string
			Online   bool
			Revision string
			State    string
			Healthy  bool
		}
		Spec map[string]any
	}
	h.API(t, "GET", "/api/v1/deployments/web", nil, http.StatusOK, &st)
	if st.Name != "web" || st.State != "rolling" || len(st.Devices) != 2 || st.Devices[0].Device != "cam-1" || st.Devices[0].Revision != rev2 ||
		st.Devices[0].Online || st.Devices[0].State != "" || st.Spec["name"] != "web" || st.Spec["artifact"] != "web@1.0.0" {
		t.Errorf("status %+v", st)
	}
	var errBody struct {
		Error struct{ Code, Message string }
	}
	h.API(t, "GET", "/api/v1/deployments/nope", nil, http.StatusNotFound, &errBody)
	if errBody.Error.Code != "not_found" {
		t.Errorf("unknown deployment: %+v", errBody)
	}

	// Logs: an unknown device, an offline one.
	h.API(t, "GET", "/api/v1/devices/nope/services/web/logs", nil, http.StatusNotFound, &errBody)
	h.API(t, "GET", "/api/v1/devices/cam-1/services/web/logs?tail=10", nil, http.StatusConflict, &errBody)
	if errBody.Error.Code != "device_offline" || !strings.Contains(errBody.Error.Message, "device is offline") {
		t.Errorf("offline device: %+v", errBody)
	}
	h.API(t, "GET", "/api/v1/devices/cam-1/services/web/logs?tail=many", nil, http.StatusBadRequest, &errBody)

	// Delete.
	var removed struct {
		Removed string
		Devices int
	}
	h.API(t, "DELETE", "/api/v1/deployments/web", nil, http.StatusOK, &removed)
	if removed.Removed != "web" || removed.Devices != 2 {
		t.Errorf("delete: %+v", removed)
	}
	var after protocol.ShadowDocument
	h.API(t, "GET", "/api/v1/devices/cam-1/shadow?name="+protocol.WorkloadsShadow, nil, http.StatusOK, &after)
	desired, _ = after.State["desired"].(map[string]any)
	if ws, _ := protocol.DecodeWorkloadsDesired(desired[protocol.WorkloadsKey]); len(ws) != 0 {
		t.Errorf("cam-1 workloads after delete: %v", desired)
	}
	h.API(t, "GET", "/api/v1/deployments/web", nil, http.StatusNotFound, nil)
	h.API(t, "DELETE", "/api/v1/deployments/web", nil, http.StatusNotFound, nil)
	h.API(t, "GET", "/api/v1/deployments", nil, http.StatusOK, &list)
	if len(list.Deployments) != 0 {
		t.Errorf("list after delete: %+v", list)
	}
	// Authentication is required.
	h.Token = ""
	h.API(t, "GET", "/api/v1/deployments", nil, http.StatusUnauthorized, nil)
}

// fakeDeploy answers log requests as a test sets.
type fakeDeploy struct {
	httpapi.Deployments
	logs func(device, service string, tail int, after uint64) (protocol.LogsResponse, error)
}

func (f fakeDeploy) Logs(_ context.Context, device, service string, tail int, after uint64) (protocol.LogsResponse, error) {
	return f.logs(device, service, tail, after)
}

// TestServiceLogsAPI checks how the answers of the deploy service's Logs
// map to HTTP.
func TestServiceLogsAPI(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authSvc, err := auth.NewService(st, auth.NewIssuer(apiKey, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := auth.HashPassword(adminPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(t.Context(), adminUser, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
	var gotTail int
	var gotAfter uint64
	fd := fakeDeploy{logs: func(dev, service string, tail int, after uint64) (protocol.LogsResponse, error) {
		gotTail, gotAfter = tail, after
		switch dev {
		case "ok":
			return protocol.LogsResponse{ID: "x", Service: service, Lines: []protocol.LogLine{{Seq: 4, Time: 1700000000000, Line: "listening"}}, Last: 4}, nil
		case "empty":
			return protocol.LogsResponse{ID: "x", Service: service}, nil
		case "silent":
			return protocol.LogsResponse{}, fmt.Errorf("%w in 5s: silent", deploy.ErrDeviceTimeout)
		case "nosvc":
			return protocol.LogsResponse{Error: "no service " + service}, fmt.Errorf("%w: no service %s", deploy.ErrNoService, service)
		case "off":
			return protocol.LogsResponse{}, fmt.Errorf("%w: off", deploy.ErrDeviceOffline)
		case "broken":
			return protocol.LogsResponse{}, errors.New("disk on fire")
		}
		return protocol.LogsResponse{}, fmt.Errorf("%w: %s", deploy.ErrDeviceNotFound, dev)
	}}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Devices: device.NewService(st, tokenTTL, slog.New(slog.DiscardHandler)), Auth: authSvc, Telemetry: st,
		Deploy: fd, Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	e := &env{srv: srv, client: srv.Client(), st: st}
	e.token = e.login(t)

	var resp protocol.LogsResponse
	e.callJSON(t, "GET", "/api/v1/devices/ok/services/web/logs?tail=20&after=3", e.token, nil, http.StatusOK, &resp)
	if resp.Service != "web" || resp.Last != 4 || len(resp.Lines) != 1 || resp.Lines[0].Line != "listening" || gotTail != 20 || gotAfter != 3 {
		t.Errorf("logs %+v (tail %d after %d)", resp, gotTail, gotAfter)
	}
	r, raw := e.do(t, "GET", "/api/v1/devices/empty/services/web/logs", e.token, nil)
	if r.StatusCode != http.StatusOK || !bytes.Contains(raw, []byte(`"lines":[]`)) || gotTail != 0 || gotAfter != 0 {
		t.Errorf("no lines: %d %s; want an empty list", r.StatusCode, raw)
	}
	for _, tc := range []struct {
		path   string
		status int
		code   string
		has    string
	}{
		{"/api/v1/devices/silent/services/web/logs", 504, "device_timeout", "did not answer"},
		{"/api/v1/devices/nosvc/services/web/logs", 404, "no_such_service", "no service web"},
		{"/api/v1/devices/off/services/web/logs", 409, "device_offline", "device is offline"},
		{"/api/v1/devices/ghost/services/web/logs", 404, "not_found", "ghost"},
		{"/api/v1/devices/broken/services/web/logs", 500, "internal", ""},
		{"/api/v1/devices/ok/services/web/logs?tail=1001", 400, "bad_request", "tail"},
		{"/api/v1/devices/ok/services/web/logs?tail=-1", 400, "bad_request", "tail"},
		{"/api/v1/devices/ok/services/web/logs?after=x", 400, "bad_request", "after"},
	} {
		r, raw := e.do(t, "GET", tc.path, e.token, nil)
		wantError(t, r, raw, tc.status, tc.code, tc.has)
	}
	r, raw = e.do(t, "GET", "/api/v1/devices/ok/services/web/logs", "", nil)
	wantError(t, r, raw, http.StatusUnauthorized, "unauthorized")
}
