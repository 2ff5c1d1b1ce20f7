package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/hub/auth"
	"github.com/outpost-edge/outpost/internal/hub/device"
	"github.com/outpost-edge/outpost/internal/hub/httpapi"
	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	adminUser = "admin"
	adminPass = "correct-horse-battery"
	mqttPort  = "18831"
	tokenTTL  = 24 * time.Hour
)

var (
	apiKey   = []byte("test-key-test-key-test-key-32byt")
	otherKey = []byte("another-key-another-key-another!")
)

// env is a REST API served in-process over real services and a real store.
type env struct {
	srv     *httptest.Server
	client  *http.Client
	st      *sqlite.Store
	devices *device.Service
	token   string
}

// newEnv starts the API; ready, when non-nil, is its readiness check.
func newEnv(t *testing.T, ready func(context.Context) error) *env {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "outpost.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	devices := device.NewService(st, tokenTTL, logger)
	authSvc, err := auth.NewService(st, auth.NewIssuer(apiKey, time.Hour))
	if err != nil {
		t.Fatalf("auth.NewService: %v", err)
	}
	hash, err := auth.HashPassword(adminPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, adminUser, hash, time.Now()); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if ready == nil {
		ready = st.Ping
	}
	h := httpapi.New(httpapi.Options{
		Devices:   devices,
		Auth:      authSvc,
		Telemetry: st,
		Ready:     ready,
		MQTTPort:  mqttPort,
		Logger:    logger,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, client: srv.Client(), st: st, devices: devices}
	e.token = e.login(t)
	return e
}

func (e *env) login(t *testing.T) string {
	t.Helper()
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	e.callJSON(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": adminUser, "password": adminPass}, http.StatusOK, &out)
	if out.Token == "" {
		t.Fatalf("login returned no token")
	}
	return out.Token
}

// do sends a request; body is sent as is when it is a string or []byte and
// JSON-encoded otherwise. It returns the status and the raw response body.
func (e *env) do(t *testing.T, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, raw
}

// callJSON sends a request, checks the status and decodes the body into out.
func (e *env) callJSON(t *testing.T, method, path, token string, body any, wantStatus int, out any) {
	t.Helper()
	resp, raw := e.do(t, method, path, token, body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
}

// wantError checks that a response is the documented error: the status, a
// JSON body of exactly {"error":{"code":…,"message":…}} with the given code
// and a non-empty message containing every string in msgHas.
func wantError(t *testing.T, resp *http.Response, raw []byte, status int, code string, msgHas ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, status, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %s is not the documented shape: %v", raw, err)
	}
	if dec.More() {
		t.Errorf("error body %s has data after the object", raw)
	}
	if body.Error == nil {
		t.Fatalf("error body %s has no \"error\" object", raw)
	}
	if body.Error.Code != code {
		t.Errorf("error code = %q, want %q (body %s)", body.Error.Code, code, raw)
	}
	if body.Error.Message == "" {
		t.Errorf("error message is empty (body %s)", raw)
	}
	for _, s := range msgHas {
		if !strings.Contains(body.Error.Message, s) {
			t.Errorf("error message %q does not mention %q", body.Error.Message, s)
		}
	}
}

// deviceJSON is the documented Device.
type deviceJSON struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    time.Time         `json:"created_at"`
	Joined       bool              `json:"joined"`
	Online       bool              `json:"online"`
	LastSeen     *time.Time        `json:"last_seen"`
	AgentVersion string            `json:"agent_version"`
}

type enrollmentJSON struct {
	Device             deviceJSON `json:"device"`
	JoinToken          string     `json:"join_token"`
	JoinTokenExpiresAt time.Time  `json:"join_token_expires_at"`
	JoinCommand        string     `json:"join_command"`
}

type joinJSON struct {
	DeviceID     string `json:"device_id"`
	HubURL       string `json:"hub_url"`
	MQTTURL      string `json:"mqtt_url"`
	MQTTUsername string `json:"mqtt_username"`
	MQTTPassword string `json:"mqtt_password"`
}

func (e *env) addDevice(t *testing.T, id string, labels map[string]string) enrollmentJSON {
	t.Helper()
	var out enrollmentJSON
	e.callJSON(t, "POST", "/api/v1/devices", e.token, map[string]any{"id": id, "labels": labels}, http.StatusCreated, &out)
	return out
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("success", func(t *testing.T) {
		before := time.Now()
		var out struct {
			Token     string    `json:"token"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		e.callJSON(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": adminUser, "password": adminPass}, http.StatusOK, &out)
		if out.ExpiresAt.Before(before.Add(time.Hour-2*time.Second)) || out.ExpiresAt.After(time.Now().Add(time.Hour)) {
			t.Errorf("expires_at = %v, want about an hour from now", out.ExpiresAt)
		}
		resp, raw := e.do(t, "GET", "/api/v1/devices", out.Token, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/v1/devices with the login token = %d %s, want 200", resp.StatusCode, raw)
		}
	})

	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"wrong password", map[string]string{"username": adminUser, "password": adminPass + "x"}, http.StatusUnauthorized, "unauthorized"},
		{"unknown user", map[string]string{"username": "root", "password": adminPass}, http.StatusUnauthorized, "unauthorized"},
		{"empty password", map[string]string{"username": adminUser, "password": ""}, http.StatusBadRequest, "bad_request"},
		{"missing username", map[string]string{"password": adminPass}, http.StatusBadRequest, "bad_request"},
		{"malformed JSON", `{"username": "admin", "password": `, http.StatusBadRequest, "bad_request"},
		{"unknown field", map[string]string{"username": adminUser, "password": adminPass, "otp": "1"}, http.StatusBadRequest, "bad_request"},
		{"empty body", "", http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "POST", "/api/v1/auth/login", "", tt.body)
			wantError(t, resp, raw, tt.status, tt.code)
			if strings.Contains(string(raw), `"token"`) {
				t.Errorf("a refused login returned a token: %s", raw)
			}
		})
	}
}

func TestRequireAuth(t *testing.T) {
	e := newEnv(t, nil)
	other, _, err := auth.NewIssuer(otherKey, time.Hour).Issue(adminUser)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := auth.NewIssuer(apiKey, -time.Minute).Issue(adminUser)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(e.token, ".")
	noneAlg := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."

	tests := []struct {
		name   string
		header string // the whole Authorization header; empty: none
	}{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"basic auth", "Basic YWRtaW46YWRtaW4="},
		{"token without scheme", e.token},
		{"garbage token", "Bearer garbage"},
		{"signed with another key", "Bearer " + other},
		{"expired", "Bearer " + expired},
		{"alg none", "Bearer " + noneAlg},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + "."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, target := range []struct{ method, path string }{
				{"GET", "/api/v1/devices"},
				{"POST", "/api/v1/devices"},
				{"GET", "/api/v1/devices/pump-7/telemetry"},
			} {
				var body io.Reader
				if target.method == "POST" {
					body = strings.NewReader(`{"id":"sneaky"}`)
				}
				req, err := http.NewRequestWithContext(t.Context(), target.method, e.srv.URL+target.path, body)
				if err != nil {
					t.Fatal(err)
				}
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				wantError(t, resp, raw, http.StatusUnauthorized, "unauthorized")
			}
			if _, err := e.st.Device(t.Context(), "sneaky"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("an unauthenticated POST created a device (err %v)", err)
			}
		})
	}
}

func TestAddDeviceRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice(t, "pump-7", nil)
	tooManyLabels := map[string]string{}
	for i := range device.MaxLabels + 1 {
		tooManyLabels[string(rune('a'+i%26))+strings.Repeat("x", i)] = "v"
	}
	// big is a syntactically valid body that is over the limit.
	big := `{"id":"big","labels":{"note":"` + strings.Repeat("v", httpapi.MaxBodyBytes) + `"}}`
	// padded is a valid body padded with spaces to just over the limit.
	padded := `{"id":"padded"}` + strings.Repeat(" ", httpapi.MaxBodyBytes+1-len(`{"id":"padded"}`))

	tests := []struct {
		name   string
		body   any
		status int
		code   string
		msgHas []string
	}{
		{name: "malformed JSON", body: `{"id": "x"`, status: 400, code: "bad_request"},
		{name: "not an object", body: `["x"]`, status: 400, code: "bad_request"},
		{name: "wrong type", body: `{"id": 7}`, status: 400, code: "bad_request"},
		{name: "label value not a string", body: `{"id": "x", "labels": {"a": 1}}`, status: 400, code: "bad_request"},
		{name: "unknown field", body: `{"id": "x", "name": "pump"}`, status: 400, code: "bad_request", msgHas: []string{"name"}},
		{name: "empty body", body: "", status: 400, code: "bad_request"},
		{name: "second object", body: `{"id": "x"} {"id": "y"}`, status: 400, code: "bad_request"},
		{name: "trailing brace", body: `{"id": "brace"}}`, status: 400, code: "bad_request"},
		{name: "trailing bracket", body: `{"id": "bracket"}]`, status: 400, code: "bad_request"},
		{name: "empty id", body: `{"id": ""}`, status: 400, code: "bad_request", msgHas: []string{"device id"}},
		{name: "bad id", body: `{"id": "-pump"}`, status: 400, code: "bad_request", msgHas: []string{"-pump"}},
		{name: "id with slash", body: `{"id": "a/b"}`, status: 400, code: "bad_request", msgHas: []string{"a/b"}},
		{name: "empty label key", body: map[string]any{"id": "x", "labels": map[string]string{"": "v"}}, status: 400, code: "bad_request", msgHas: []string{"label"}},
		{name: "bad label key", body: map[string]any{"id": "x", "labels": map[string]string{"a b": "v"}}, status: 400, code: "bad_request", msgHas: []string{`"a b"`}},
		{name: "long label value", body: map[string]any{"id": "x", "labels": map[string]string{"k": strings.Repeat("v", 256)}}, status: 400, code: "bad_request", msgHas: []string{"255"}},
		{name: "too many labels", body: map[string]any{"id": "x", "labels": tooManyLabels}, status: 400, code: "bad_request", msgHas: []string{"at most 32"}},
		{name: "body over 1 MiB", body: big, status: 413, code: "too_large"},
		{name: "whitespace-padded body over 1 MiB", body: padded, status: 413, code: "too_large"},
		{name: "duplicate", body: `{"id": "pump-7"}`, status: 409, code: "conflict", msgHas: []string{"pump-7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "POST", "/api/v1/devices", e.token, tt.body)
			wantError(t, resp, raw, tt.status, tt.code, tt.msgHas...)
		})
	}
	var list struct{ Devices []deviceJSON }
	e.callJSON(t, "GET", "/api/v1/devices", e.token, nil, http.StatusOK, &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != "pump-7" {
		t.Errorf("devices after refused adds = %+v, want only pump-7", list.Devices)
	}
}

func TestAddGetDeleteDevice(t *testing.T) {
	e := newEnv(t, nil)
	before := time.Now().Truncate(time.Second)
	en := e.addDevice(t, "pump-7", map[string]string{"site": "plant-1"})
	after := time.Now()

	want := deviceJSON{ID: "pump-7", Labels: map[string]string{"site": "plant-1"}}
	got := en.Device
	if got.CreatedAt.Before(before) || got.CreatedAt.After(after) {
		t.Errorf("created_at = %v, want between %v and %v", got.CreatedAt, before, after)
	}
	got.CreatedAt = time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("device = %+v, want %+v", got, want)
	}
	if !strings.HasPrefix(en.JoinToken, "ojt_") {
		t.Errorf("join_token = %q, want ojt_…", en.JoinToken)
	}
	if exp := en.JoinTokenExpiresAt; exp.Before(before.Add(tokenTTL-time.Second)) || exp.After(after.Add(tokenTTL)) {
		t.Errorf("join_token_expires_at = %v, want about %v from now", exp, tokenTTL)
	}
	if !strings.Contains(en.JoinCommand, en.JoinToken) || !strings.Contains(en.JoinCommand, "--hub "+e.srv.URL) ||
		!strings.HasPrefix(en.JoinCommand, "outpost-agent join ") {
		t.Errorf("join_command = %q, want outpost-agent join with --hub %s and the token", en.JoinCommand, e.srv.URL)
	}

	resp, raw := e.do(t, "GET", "/api/v1/devices/pump-7", e.token, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET device = %d %s", resp.StatusCode, raw)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "labels", "created_at", "joined", "online"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("device JSON %s lacks %q", raw, k)
		}
	}
	if _, ok := fields["last_seen"]; ok {
		t.Errorf("device JSON %s has last_seen for a device that never connected", raw)
	}

	e.devices.SetPresence(t.Context(), "pump-7", true, "0.1.0")
	var d deviceJSON
	e.callJSON(t, "GET", "/api/v1/devices/pump-7", e.token, nil, http.StatusOK, &d)
	if !d.Online || d.LastSeen == nil || d.AgentVersion != "0.1.0" {
		t.Errorf("after connect device = %+v, want online with last_seen and agent_version 0.1.0", d)
	}

	if _, err := e.st.InsertPoints(t.Context(), []store.Point{{DeviceID: "pump-7", Seq: 1, Sensor: "t", TS: time.Now(), Kind: store.KindNum, Num: 1}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, raw = e.do(t, "DELETE", "/api/v1/devices/pump-7", e.token, nil)
	if resp.StatusCode != http.StatusNoContent || len(raw) != 0 {
		t.Fatalf("DELETE = %d %q, want 204 and no body", resp.StatusCode, raw)
	}
	if n, err := e.st.CountPoints(t.Context(), "pump-7"); err != nil || n != 0 {
		t.Errorf("points after DELETE = %d, %v; want 0", n, err)
	}
	for _, tt := range []struct{ method, path string }{
		{"GET", "/api/v1/devices/pump-7"},
		{"DELETE", "/api/v1/devices/pump-7"},
		{"GET", "/api/v1/devices/never-was"},
		{"POST", "/api/v1/devices/never-was/join-token"},
		{"GET", "/api/v1/devices/never-was/telemetry"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, raw := e.do(t, tt.method, tt.path, e.token, nil)
			wantError(t, resp, raw, http.StatusNotFound, "not_found")
		})
	}
}

func TestListDevicesByLabel(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice(t, "c", map[string]string{"site": "a", "role": "pump"})
	e.addDevice(t, "a", map[string]string{"site": "a"})
	e.addDevice(t, "b", map[string]string{"site": "b", "role": "pump"})
	e.addDevice(t, "d", nil)
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"all sorted by id", "", []string{"a", "b", "c", "d"}},
		{"one label", "?label=site=a", []string{"a", "c"}},
		{"repeated labels all match", "?label=site=a&label=role=pump", []string{"c"}},
		{"value containing =", "?label=site=a=b", []string{}},
		{"no match", "?label=site=z", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "GET", "/api/v1/devices"+tt.query, e.token, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d %s", resp.StatusCode, raw)
			}
			var out struct {
				Devices []deviceJSON `json:"devices"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatal(err)
			}
			if out.Devices == nil {
				t.Errorf("body %s: devices must be an array, not null", raw)
			}
			got := []string{}
			for _, d := range out.Devices {
				got = append(got, d.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids = %v, want %v", got, tt.want)
			}
		})
	}
	for _, q := range []string{"?label=site", "?label==a", "?label="} {
		t.Run("bad selector "+q, func(t *testing.T) {
			resp, raw := e.do(t, "GET", "/api/v1/devices"+q, e.token, nil)
			wantError(t, resp, raw, http.StatusBadRequest, "bad_request")
		})
	}
}

func TestJoin(t *testing.T) {
	e := newEnv(t, nil)
	en := e.addDevice(t, "pump-7", nil)

	var j joinJSON
	e.callJSON(t, "POST", "/api/v1/join", "", map[string]string{"token": en.JoinToken}, http.StatusOK, &j)
	want := joinJSON{DeviceID: "pump-7", HubURL: e.srv.URL, MQTTURL: "mqtt://127.0.0.1:" + mqttPort, MQTTUsername: "pump-7", MQTTPassword: j.MQTTPassword}
	if j != want || j.MQTTPassword == "" {
		t.Errorf("join = %+v, want %+v with a password", j, want)
	}
	if !e.devices.Authenticate(t.Context(), "pump-7", j.MQTTPassword) {
		t.Errorf("the MQTT password from join does not authenticate")
	}
	var d deviceJSON
	e.callJSON(t, "GET", "/api/v1/devices/pump-7", e.token, nil, http.StatusOK, &d)
	if !d.Joined {
		t.Errorf("device after join has joined=false")
	}

	e.addDevice(t, "pump-8", nil)
	expired := auth.NewJoinToken()
	if err := e.st.AddJoinToken(t.Context(), "pump-8", auth.HashSecret(expired), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		body   any
		status int
		code   string
		msgHas []string
	}{
		{"same token again", map[string]string{"token": en.JoinToken}, 401, "unauthorized", []string{"already used"}},
		{"unknown token", map[string]string{"token": auth.NewJoinToken()}, 401, "unauthorized", []string{"unknown"}},
		{"expired token", map[string]string{"token": expired}, 401, "unauthorized", []string{"expired"}},
		{"empty token", map[string]string{"token": ""}, 400, "bad_request", nil},
		{"no token", `{}`, 400, "bad_request", nil},
		{"malformed", `{"token":`, 400, "bad_request", nil},
		{"unknown field", map[string]string{"token": en.JoinToken, "id": "pump-7"}, 400, "bad_request", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "POST", "/api/v1/join", "", tt.body)
			wantError(t, resp, raw, tt.status, tt.code, tt.msgHas...)
		})
	}
	if !e.devices.Authenticate(t.Context(), "pump-7", j.MQTTPassword) {
		t.Errorf("a refused re-use of the token changed the device's password")
	}
}

func TestNewJoinToken(t *testing.T) {
	e := newEnv(t, nil)
	first := e.addDevice(t, "pump-7", map[string]string{"site": "a"})
	var second enrollmentJSON
	e.callJSON(t, "POST", "/api/v1/devices/pump-7/join-token", e.token, nil, http.StatusCreated, &second)
	if second.JoinToken == "" || second.JoinToken == first.JoinToken {
		t.Fatalf("new join_token = %q, want a fresh token (old %q)", second.JoinToken, first.JoinToken)
	}
	if second.Device.ID != "pump-7" || second.Device.Labels["site"] != "a" {
		t.Errorf("device = %+v, want pump-7 with site=a", second.Device)
	}
	if !strings.Contains(second.JoinCommand, second.JoinToken) || !strings.Contains(second.JoinCommand, e.srv.URL) {
		t.Errorf("join_command = %q, want the new token and %s", second.JoinCommand, e.srv.URL)
	}

	resp, raw := e.do(t, "POST", "/api/v1/join", "", map[string]string{"token": first.JoinToken})
	wantError(t, resp, raw, http.StatusUnauthorized, "unauthorized")
	var j joinJSON
	e.callJSON(t, "POST", "/api/v1/join", "", map[string]string{"token": second.JoinToken}, http.StatusOK, &j)

	// Re-provisioning: a third token and join replace the password.
	var third enrollmentJSON
	e.callJSON(t, "POST", "/api/v1/devices/pump-7/join-token", e.token, nil, http.StatusCreated, &third)
	var j2 joinJSON
	e.callJSON(t, "POST", "/api/v1/join", "", map[string]string{"token": third.JoinToken}, http.StatusOK, &j2)
	if e.devices.Authenticate(t.Context(), "pump-7", j.MQTTPassword) {
		t.Errorf("the previous MQTT password still works after re-join")
	}
	if !e.devices.Authenticate(t.Context(), "pump-7", j2.MQTTPassword) {
		t.Errorf("the new MQTT password does not work")
	}
}

type pointJSON struct {
	Seq    uint64    `json:"seq"`
	Sensor string    `json:"sensor"`
	TS     time.Time `json:"ts"`
	Value  any       `json:"value"`
}

func TestTelemetry(t *testing.T) {
	e := newEnv(t, nil)
	e.addDevice(t, "pump-7", nil)
	e.addDevice(t, "pump-8", nil)
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond).UTC()
	at := func(d time.Duration) time.Time { return base.Add(d) }
	pts := []store.Point{
		{DeviceID: "pump-7", Seq: 1, Sensor: "temperature", TS: at(0), Kind: store.KindNum, Num: 21.5},
		{DeviceID: "pump-7", Seq: 3, Sensor: "alarm", TS: at(time.Second), Kind: store.KindFlag, Flag: true},
		{DeviceID: "pump-7", Seq: 2, Sensor: "state", TS: at(time.Second), Kind: store.KindStr, Str: "open"},
		{DeviceID: "pump-7", Seq: 4, Sensor: "temperature", TS: at(2 * time.Second), Kind: store.KindNum, Num: 22},
		{DeviceID: "pump-7", Seq: 5, Sensor: "temperature", TS: at(-2 * time.Hour), Kind: store.KindNum, Num: 10},
		{DeviceID: "pump-7", Seq: 6, Sensor: "temperature", TS: at(-500 * time.Millisecond), Kind: store.KindNum, Num: 20},
		{DeviceID: "pump-8", Seq: 1, Sensor: "temperature", TS: at(0), Kind: store.KindNum, Num: 99},
	}
	if n, err := e.st.InsertPoints(t.Context(), pts, time.Now()); err != nil || n != len(pts) {
		t.Fatalf("InsertPoints = %d, %v", n, err)
	}
	rfc := func(ts time.Time) string { return ts.Format(time.RFC3339Nano) }

	tests := []struct {
		name  string
		query url.Values
		want  []uint64
	}{
		{"defaults: the last hour", url.Values{}, []uint64{6, 1, 2, 3, 4}},
		{"sensor", url.Values{"sensor": {"temperature"}}, []uint64{6, 1, 4}},
		{"unknown sensor", url.Values{"sensor": {"nope"}}, []uint64{}},
		{"since and until are [since, until)", url.Values{"since": {rfc(at(time.Second))}, "until": {rfc(at(2 * time.Second))}}, []uint64{2, 3}},
		{"since inclusive", url.Values{"since": {rfc(at(0))}}, []uint64{1, 2, 3, 4}},
		{"since as a duration", url.Values{"since": {"3h"}}, []uint64{5, 6, 1, 2, 3, 4}},
		{"until as a duration", url.Values{"since": {"3h"}, "until": {"1h"}}, []uint64{5}},
		{"limit", url.Values{"limit": {"2"}}, []uint64{6, 1}},
		{"limit with sensor and since", url.Values{"sensor": {"temperature"}, "since": {"3h"}, "limit": {"3"}}, []uint64{5, 6, 1}},
		{"maximum limit", url.Values{"limit": {"10000"}}, []uint64{6, 1, 2, 3, 4}},
		{"offset time", url.Values{"since": {at(time.Second).In(time.FixedZone("", 5*3600)).Format(time.RFC3339Nano)}}, []uint64{2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "GET", "/api/v1/devices/pump-7/telemetry?"+tt.query.Encode(), e.token, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d %s", resp.StatusCode, raw)
			}
			var out struct {
				Device string      `json:"device"`
				Points []pointJSON `json:"points"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatal(err)
			}
			if out.Device != "pump-7" {
				t.Errorf("device = %q, want pump-7", out.Device)
			}
			if out.Points == nil {
				t.Errorf("body %s: points must be an array, not null", raw)
			}
			got := []uint64{}
			for _, p := range out.Points {
				got = append(got, p.Seq)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("seqs = %v, want %v (body %s)", got, tt.want, raw)
			}
		})
	}

	t.Run("values and timestamps as sent", func(t *testing.T) {
		var out struct {
			Points []pointJSON `json:"points"`
		}
		e.callJSON(t, "GET", "/api/v1/devices/pump-7/telemetry?since=3h", e.token, nil, http.StatusOK, &out)
		byseq := map[uint64]store.Point{}
		for _, p := range pts[:6] {
			byseq[p.Seq] = p
		}
		if len(out.Points) != 6 {
			t.Fatalf("got %d points, want 6", len(out.Points))
		}
		for _, p := range out.Points {
			w := byseq[p.Seq]
			if p.Sensor != w.Sensor || !p.TS.Equal(w.TS) || p.Value != w.Value() {
				t.Errorf("point %d = {%s %v %#v}, want {%s %v %#v}", p.Seq, p.Sensor, p.TS, p.Value, w.Sensor, w.TS, w.Value())
			}
		}
	})

	bad := []struct {
		name   string
		query  string
		msgHas string
	}{
		{"since not a time", "since=yesterday", "since"},
		{"negative duration", "since=-5m", "since"},
		{"until not a time", "until=2026-13-01", "until"},
		{"limit zero", "limit=0", "limit"},
		{"limit too big", "limit=10001", "limit"},
		{"limit not a number", "limit=ten", "limit"},
		{"limit negative", "limit=-1", "limit"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := e.do(t, "GET", "/api/v1/devices/pump-7/telemetry?"+tt.query, e.token, nil)
			wantError(t, resp, raw, http.StatusBadRequest, "bad_request", tt.msgHas)
		})
	}
	t.Run("unknown device", func(t *testing.T) {
		resp, raw := e.do(t, "GET", "/api/v1/devices/pump-9/telemetry", e.token, nil)
		wantError(t, resp, raw, http.StatusNotFound, "not_found")
	})
}

func TestHealthAndRoutes(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		method, path string
		status       int
		want         map[string]string
	}{
		{"GET", "/healthz", 200, map[string]string{"status": "ok"}},
		{"GET", "/readyz", 200, map[string]string{"status": "ready"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var got map[string]string
			e.callJSON(t, tt.method, tt.path, "", nil, tt.status, &got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("body = %v, want %v", got, tt.want)
			}
		})
	}
	notFound := []struct{ method, path, token string }{
		{"GET", "/nope", ""},
		{"GET", "/api/v1/nope", e.token},
		{"GET", "/api/v2/devices", e.token},
		{"POST", "/api/v1/devices/pump-7/nope", e.token},
	}
	for _, tt := range notFound {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, raw := e.do(t, tt.method, tt.path, tt.token, nil)
			wantError(t, resp, raw, http.StatusNotFound, "not_found", tt.path)
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		resp, raw := e.do(t, "PUT", "/api/v1/devices", e.token, `{}`)
		wantError(t, resp, raw, http.StatusMethodNotAllowed, "method_not_allowed")
	})
}

func TestReadyzUnavailable(t *testing.T) {
	e := newEnv(t, func(context.Context) error { return errors.New("broker down") })
	resp, raw := e.do(t, "GET", "/readyz", "", nil)
	wantError(t, resp, raw, http.StatusServiceUnavailable, "unavailable")
	if strings.Contains(string(raw), "broker down") {
		t.Errorf("/readyz leaks the internal cause to unauthenticated callers: %s", raw)
	}
	// Liveness does not depend on readiness.
	var h map[string]string
	e.callJSON(t, "GET", "/healthz", "", nil, http.StatusOK, &h)
}
