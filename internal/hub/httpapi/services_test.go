package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hub/registry"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// newRegistryEnv serves the API with a real registry over the built-in
// backend.
func newRegistryEnv(t *testing.T) (*env, *registry.Service) {
	t.Helper()
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
	reg, err := registry.New(registry.Options{Backend: registry.NewStoreBackend(st)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Devices: device.NewService(st, tokenTTL, slog.New(slog.DiscardHandler)), Auth: authSvc, Telemetry: st,
		Registry: reg, Logger: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	e := &env{srv: srv, client: srv.Client(), st: st}
	e.token = e.login(t)
	return e, reg
}

// instance is an instance as the API shows it.
type instance struct {
	Service, ID, Address, Output, Source, Device, TTL string
	Port                                              int
	Tags                                              []string
	Meta                                              map[string]string
	Health                                            registry.Health
	Check                                             *struct{ Type, Path, Interval, Timeout string }
	ExpiresAt                                         *time.Time `json:"expires_at"`
}

type instancesJSON struct {
	Service   string     `json:"service"`
	Instances []instance `json:"instances"`
}

func ids(ins []instance) string {
	var out []string
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return strings.Join(out, ",")
}

func TestServicesAPI(t *testing.T) {
	e, reg := newRegistryEnv(t)
	ctx := t.Context()

	var created instance
	e.callJSON(t, "POST", "/api/v1/services/web/instances", e.token, map[string]any{
		"address": "10.0.0.5", "port": 8080, "tags": []string{"blue"}, "meta": map[string]string{"zone": "a"}, "ttl": "1m",
	}, http.StatusCreated, &created)
	if created.ID != "10.0.0.5:8080" || created.Source != registry.SourceTTL || created.Health != registry.Passing || created.TTL != "1m0s" || created.Meta["zone"] != "a" {
		t.Errorf("registered %+v", created)
	}
	e.callJSON(t, "POST", "/api/v1/services/web/instances", e.token, map[string]any{
		"id": "web-2", "address": "10.0.0.6", "port": 8080, "check": map[string]string{"type": "tcp", "interval": "1m", "timeout": "1s"},
	}, http.StatusCreated, &created)
	if created.Source != registry.SourceCheck || created.Health != registry.Critical || created.Check == nil || created.Check.Interval != "1m0s" || created.Check.Timeout != "1s" {
		t.Errorf("registered %+v", created)
	}
	if _, err := reg.Register(ctx, registry.Instance{Service: "db", ID: "cam-1", Address: "10.0.0.7", Port: 5432,
		Source: registry.SourceAgent, Device: "cam-1", Health: registry.Passing}); err != nil {
		t.Fatal(err)
	}

	var list struct {
		Services []struct {
			Name               string
			Instances, Passing int
		}
	}
	e.callJSON(t, "GET", "/api/v1/services", e.token, nil, http.StatusOK, &list)
	if got := fmt.Sprint(list.Services); got != "[{db 1 1} {web 2 1}]" {
		t.Errorf("services = %s", got)
	}

	var res instancesJSON
	for _, tc := range []struct{ query, want string }{
		{"", "10.0.0.5:8080"},
		{"?all=true", "10.0.0.5:8080,web-2"},
		{"?tag=blue", "10.0.0.5:8080"},
		{"?tag=green", ""},
		{"?all=true&tag=blue", "10.0.0.5:8080"},
	} {
		e.callJSON(t, "GET", "/api/v1/services/web"+tc.query, e.token, nil, http.StatusOK, &res)
		if res.Service != "web" || ids(res.Instances) != tc.want {
			t.Errorf("GET web%s = %s %q, want %q", tc.query, res.Service, ids(res.Instances), tc.want)
		}
	}
	r, raw := e.do(t, "GET", "/api/v1/services/nobody", e.token, nil)
	if r.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"instances":[]`) {
		t.Errorf("unknown service: %d %s; want an empty list", r.StatusCode, raw)
	}

	var renewed instance
	e.callJSON(t, "PUT", "/api/v1/services/web/instances/10.0.0.5:8080/renew", e.token, nil, http.StatusOK, &renewed)
	if renewed.Health != registry.Passing || renewed.ExpiresAt == nil {
		t.Errorf("renewed %+v", renewed)
	}
	r, raw = e.do(t, "DELETE", "/api/v1/services/web/instances/web-2", e.token, nil)
	if r.StatusCode != http.StatusNoContent || len(raw) != 0 {
		t.Errorf("DELETE = %d %s", r.StatusCode, raw)
	}

	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code, has    string
	}{
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 8080}, 400, "bad_request", "ttl or check"},
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 8080, "ttl": "soon"}, 400, "bad_request", "ttl"},
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 0, "ttl": "10s"}, 400, "bad_request", "port"},
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 80, "ttl": "10s", "check": map[string]string{"type": "tcp"}}, 400, "bad_request", "not both"},
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 80, "check": map[string]string{"type": "udp"}}, 400, "bad_request", "check type"},
		{"POST", "/api/v1/services/Web/instances", map[string]any{"address": "10.0.0.5", "port": 80, "ttl": "10s"}, 400, "bad_request", "service"},
		{"POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 80, "ttl": "10s", "source": "agent"}, 400, "bad_request", "source"},
		{"PUT", "/api/v1/services/web/instances/gone/renew", nil, 404, "not_found", "gone"},
		{"PUT", "/api/v1/services/db/instances/cam-1/renew", nil, 400, "bad_request", "no TTL"},
		{"DELETE", "/api/v1/services/web/instances/web-2", nil, 404, "not_found", "web-2"},
		{"GET", "/api/v1/services/Bad_Name", nil, 400, "bad_request", "service"},
		{"GET", "/api/v1/services/web?all=maybe", nil, 400, "bad_request", "all"},
		{"GET", "/api/v1/services/Bad_Name/watch", nil, 400, "bad_request", "service"},
	} {
		r, raw := e.do(t, tc.method, tc.path, e.token, tc.body)
		wantError(t, r, raw, tc.status, tc.code, tc.has)
	}
	r, raw = e.do(t, "GET", "/api/v1/services", "", nil)
	wantError(t, r, raw, http.StatusUnauthorized, "unauthorized")
}

// TestServicesWatch reads the event stream: the snapshot at once, another
// after a change, and the stream ends when the client goes.
func TestServicesWatch(t *testing.T) {
	e, reg := newRegistryEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/services/web/watch?tag=blue", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() instancesJSON {
		t.Helper()
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if event != "instances" {
					t.Fatalf("data of event %q", event)
				}
				var v instancesJSON
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v); err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return instancesJSON{}
	}
	if v := next(); v.Service != "web" || len(v.Instances) != 0 {
		t.Errorf("first snapshot %+v; want none", v)
	}
	for _, in := range []registry.Instance{
		{Service: "web", ID: "green-1", Address: "10.0.0.4", Port: 80, Tags: []string{"green"}, TTL: time.Minute},
		{Service: "web", ID: "blue-1", Address: "10.0.0.5", Port: 80, Tags: []string{"blue"}, TTL: time.Minute},
	} {
		if _, err := reg.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	if v := next(); ids(v.Instances) != "blue-1" {
		t.Errorf("after registering: %q, want blue-1 only", ids(v.Instances))
	}
	cancel()
}

// TestServicesInHub checks the wiring in a whole hub: the registry is
// served and its sweeper runs (a TTL instance expires).
func TestServicesInHub(t *testing.T) {
	h := hubtest.Start(t)
	var created instance
	h.API(t, "POST", "/api/v1/services/web/instances", map[string]any{"address": "10.0.0.5", "port": 8080, "ttl": "1s"}, http.StatusCreated, &created)
	var res instancesJSON
	h.API(t, "GET", "/api/v1/services/web", nil, http.StatusOK, &res)
	if ids(res.Instances) != "10.0.0.5:8080" {
		t.Fatalf("resolved %+v", res)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		h.API(t, "GET", "/api/v1/services/web?all=true", nil, http.StatusOK, &res)
		if len(res.Instances) != 1 || res.Instances[0].Health != registry.Critical || res.Instances[0].Output != "TTL expired" {
			return fmt.Errorf("instances %+v; want the one critical after its TTL", res.Instances)
		}
		return nil
	})
}
