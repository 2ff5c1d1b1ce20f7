package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/localapi"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// apiConfig is testConfig without sensors (every point the hub gets comes
// through the local API) and with the local API on a free port.
func apiConfig(brokerURL string) config.Config {
	c := testConfig(brokerURL)
	c.Sources = []config.Source{}
	c.HTTP.Listen = ""
	c.API.Listen = "127.0.0.1:0"
	return c
}

// startAPI starts an agent and waits for its local API; it returns the
// API's base URL.
func startAPI(t *testing.T, cfg config.Config, dataDir string) (*running, string) {
	t.Helper()
	r := start(t, cfg, dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if r.a.APIAddr() == "" || !r.a.Stats().Running {
			return fmt.Errorf("the local API is not up yet")
		}
		return nil
	})
	return r, "http://" + r.a.APIAddr()
}

// call makes a request and returns the status, the Content-Type and the body.
func call(t *testing.T, method, url, contentType, body string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// wantJSONError fails unless body is {"error":"…"} with msg in it.
func wantJSONError(t *testing.T, what string, code, wantCode int, ctype, body, msg string) {
	t.Helper()
	var e struct{ Error string }
	if code != wantCode || ctype != "application/json" || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, msg) {
		t.Errorf("%s = %d %s %s; want %d with a JSON error containing %q", what, code, ctype, body, wantCode, msg)
	}
}

// receivedPoints returns every point the broker got, in seq order, with
// their seqs.
func receivedPoints(t *testing.T, b *brokertest.Broker) ([]uint64, []*outpostv1.Point) {
	t.Helper()
	type sp struct {
		seq uint64
		p   *outpostv1.Point
	}
	var all []sp
	for _, bt := range received(t, b) {
		for i, p := range bt.GetPoints() {
			all = append(all, sp{bt.GetSeqFirst() + uint64(i), p})
		}
	}
	slices.SortFunc(all, func(a, b sp) int { return int(a.seq) - int(b.seq) })
	var seqs []uint64
	var pts []*outpostv1.Point
	for _, x := range all {
		seqs, pts = append(seqs, x.seq), append(pts, x.p)
	}
	return seqs, pts
}

func TestLocalAPIPublish(t *testing.T) {
	b := brokertest.Start(t, "")
	r, base := startAPI(t, apiConfig(b.URL), t.TempDir())

	// Bad input: every problem is listed and nothing is stored.
	code, ctype, body := call(t, "POST", base+"/v1/publish", "application/json", `{"points":[
		{"sensor":"flow","value":1},
		{"sensor":"bad name","value":2},
		{"sensor":"flow","value":"`+strings.Repeat("x", 2000)+`"},
		{"sensor":"flow"},
		{"sensor":"flow","value":1,"ts":"yesterday"},
		{"sensor":"flow","value":1,"ts":1},
		{"sensor":"flow","value":[1]},
		{"sensor":"flow","value":1,"unit":"l"}]}`)
	var bad struct {
		Error    string
		Problems []string
	}
	if err := json.Unmarshal([]byte(body), &bad); err != nil || code != http.StatusBadRequest || ctype != "application/json" {
		t.Fatalf("bad publish = %d %s %s", code, ctype, body)
	}
	wantProblems := []string{"points[1]: bad_name: sensor name", "points[2]: ", "points[3]: value is missing", "points[4]: ts", "points[5]:", "points[6]: value must be", "points[7]: not a point"}
	if len(bad.Problems) != len(wantProblems) {
		t.Errorf("problems %q; want one for each of points 1 to 7", bad.Problems)
	} else if testing.Verbose() {
		t.Logf("problems: %q", bad.Problems)
	}
	for i, p := range bad.Problems {
		if i < len(wantProblems) && !strings.HasPrefix(p, wantProblems[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, p, wantProblems[i])
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"not JSON", `{"points":`},
		{"empty", `{"points":[]}`},
		{"not a list", `{"points":{"sensor":"a","value":1}}`},
		{"extra key", `{"points":[{"sensor":"a","value":1}],"x":1}`},
		{"a list", `[{"sensor":"a","value":1}]`},
		{"single bad point", `{"sensor":"a","value":NaN}`},
	} {
		code, ctype, body := call(t, "POST", base+"/v1/publish", "application/json", tc.body)
		wantJSONError(t, tc.name, code, http.StatusBadRequest, ctype, body, "")
	}
	if st := r.a.Stats(); st.NextSeq != 1 || st.SpoolPoints != 0 {
		t.Fatalf("after bad publishes: next seq %d, spool %d; want nothing stored", st.NextSeq, st.SpoolPoints)
	}

	// Good input: a list, and a single point.
	code, _, body = call(t, "POST", base+"/v1/publish", "application/json",
		`{"points":[{"sensor":"flow","value":1.5,"ts":"2026-01-02T03:04:05.006Z"},{"sensor":"valve/open","value":true,"ts":1767322800000},{"sensor":"mode","value":"auto"}]}`)
	if code != http.StatusAccepted || strings.TrimSpace(body) != `{"accepted":3}` {
		t.Fatalf("publish = %d %s, want 202 {\"accepted\":3}", code, body)
	}
	code, _, body = call(t, "POST", base+"/v1/publish", "", `{"sensor":"flow","value":2}`)
	if code != http.StatusAccepted || strings.TrimSpace(body) != `{"accepted":1}` {
		t.Fatalf("single point publish = %d %s", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := r.a.Stats(); st.PointsAcked != 4 || st.SpoolPoints != 0 {
			return fmt.Errorf("acked %d, spool %d", st.PointsAcked, st.SpoolPoints)
		}
		return nil
	})
	seqs, pts := receivedPoints(t, b)
	checkDense(t, seqs, 1)
	if len(pts) != 4 {
		t.Fatalf("the hub got %d points, want 4", len(pts))
	}
	if p := pts[0]; p.GetSensor() != "flow" || p.GetNum() != 1.5 || p.GetTsUnixMs() != time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC).UnixMilli() {
		t.Errorf("point 1 = %v", p)
	}
	if p := pts[1]; p.GetSensor() != "valve/open" || !p.GetFlag() || p.GetTsUnixMs() != 1767322800000 {
		t.Errorf("point 2 = %v", p)
	}
	if p := pts[2]; p.GetSensor() != "mode" || p.GetStr() != "auto" || time.Since(time.UnixMilli(p.GetTsUnixMs())) > time.Minute {
		t.Errorf("point 3 = %v, want now as its time", p)
	}
	if p := pts[3]; p.GetSensor() != "flow" || p.GetNum() != 2 {
		t.Errorf("point 4 = %v", p)
	}

	// After a reconnect the next points continue the seqs; nothing is
	// sent twice.
	connects := r.a.Stats().Connects
	if err := b.Kick(device); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := r.a.Stats(); !st.Connected || st.Connects == connects {
			return fmt.Errorf("not reconnected yet")
		}
		return nil
	})
	for i := range 3 {
		code, _, body := call(t, "POST", base+"/v1/publish", "", fmt.Sprintf(`{"points":[{"sensor":"n","value":%d},{"sensor":"n","value":%d}]}`, 2*i, 2*i+1))
		if code != http.StatusAccepted {
			t.Fatalf("publish after the reconnect = %d %s", code, body)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if seqs, _ := receivedPoints(t, b); len(seqs) < 10 {
			return fmt.Errorf("the hub has %d points, want 10", len(seqs))
		}
		return nil
	})
	seqs, pts = receivedPoints(t, b)
	checkDense(t, seqs, 1)
	for i, p := range pts[4:] {
		if p.GetSensor() != "n" || p.GetNum() != float64(i) {
			t.Errorf("point %d = %v, want n=%d", 5+i, p, i)
		}
	}
}

func TestLocalAPIIndexAndErrors(t *testing.T) {
	b := brokertest.Start(t, "")
	_, base := startAPI(t, apiConfig(b.URL), t.TempDir())
	for _, p := range []string{"/v1", "/v1/"} {
		code, ctype, body := call(t, "GET", base+p, "", "")
		if code != http.StatusOK || ctype != "application/json" || !strings.Contains(body, `"/v1/publish"`) || !strings.Contains(body, `"/v1/state/{key}"`) {
			t.Errorf("GET %s = %d %s %s", p, code, ctype, body)
		}
	}
	code, ctype, body := call(t, "GET", base+"/v2/nothing", "", "")
	wantJSONError(t, "unknown path", code, http.StatusNotFound, ctype, body, "no such endpoint")
	code, ctype, body = call(t, "GET", base+"/v1/publish", "", "")
	wantJSONError(t, "GET /v1/publish", code, http.StatusMethodNotAllowed, ctype, body, "not allowed")
	code, ctype, body = call(t, "POST", base+"/v1/state/a", "", "x")
	wantJSONError(t, "POST /v1/state/a", code, http.StatusMethodNotAllowed, ctype, body, "not allowed")
}

func TestLocalAPIState(t *testing.T) {
	b := brokertest.Start(t, "")
	dir := t.TempDir()
	r, base := startAPI(t, apiConfig(b.URL), dir)

	code, ctype, body := call(t, "GET", base+"/v1/state/missing", "", "")
	wantJSONError(t, "missing key", code, http.StatusNotFound, ctype, body, "no state")
	for key, val := range map[string]string{"pump/limits": `{"max":9}`, "pump/mode": "auto", "z.last_run-1": "x"} {
		ct := "text/plain"
		if strings.HasPrefix(val, "{") {
			ct = "application/json"
		}
		if code, _, body := call(t, "PUT", base+"/v1/state/"+key, ct, val); code != http.StatusNoContent {
			t.Fatalf("PUT %s = %d %s", key, code, body)
		}
	}
	if code, _, body := call(t, "PUT", base+"/v1/state/pump/mode", "text/plain", "manual"); code != http.StatusNoContent {
		t.Fatalf("overwrite = %d %s", code, body)
	}
	code, ctype, body = call(t, "GET", base+"/v1/state/pump/limits", "", "")
	if code != http.StatusOK || ctype != "application/json" || body != `{"max":9}` {
		t.Errorf("GET pump/limits = %d %s %q", code, ctype, body)
	}
	code, ctype, body = call(t, "GET", base+"/v1/state/pump/mode", "", "")
	if code != http.StatusOK || ctype != "text/plain" || body != "manual" {
		t.Errorf("GET pump/mode = %d %s %q", code, ctype, body)
	}
	code, _, body = call(t, "GET", base+"/v1/state?prefix=pump/", "", "")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"keys":["pump/limits","pump/mode"]}` {
		t.Errorf("list pump/ = %d %s", code, body)
	}
	code, _, body = call(t, "GET", base+"/v1/state", "", "")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"keys":["pump/limits","pump/mode","z.last_run-1"]}` {
		t.Errorf("list all = %d %s", code, body)
	}

	// Bad keys and values.
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"bad byte", "PUT", "/v1/state/a%20b", "x", http.StatusBadRequest},
		{"too long", "PUT", "/v1/state/" + strings.Repeat("k", localapi.MaxKeyLen+1), "x", http.StatusBadRequest},
		{"too large", "PUT", "/v1/state/big", strings.Repeat("v", localapi.MaxValueBytes+1), http.StatusRequestEntityTooLarge},
		{"bad get", "GET", "/v1/state/a%3Bb", "", http.StatusBadRequest},
	} {
		code, ctype, body := call(t, tc.method, base+tc.path, "", tc.body)
		wantJSONError(t, tc.name, code, tc.want, ctype, body, "")
	}
	if code, _, body := call(t, "PUT", base+"/v1/state/"+strings.Repeat("k", localapi.MaxKeyLen), "", strings.Repeat("v", localapi.MaxValueBytes)); code != http.StatusNoContent {
		t.Errorf("the largest key and value = %d %s", code, body)
	}

	if code, _, body := call(t, "DELETE", base+"/v1/state/pump/mode", "", ""); code != http.StatusNoContent {
		t.Errorf("DELETE = %d %s", code, body)
	}
	if code, _, _ := call(t, "GET", base+"/v1/state/pump/mode", "", ""); code != http.StatusNotFound {
		t.Errorf("GET after DELETE = %d, want 404", code)
	}
	if code, _, body := call(t, "DELETE", base+"/v1/state/pump/mode", "", ""); code != http.StatusNoContent {
		t.Errorf("DELETE of a missing key = %d %s, want 204", code, body)
	}

	// A new agent on the same data directory has the state.
	r.shutdown(t)
	_, base = startAPI(t, apiConfig(b.URL), dir)
	code, ctype, body = call(t, "GET", base+"/v1/state/pump/limits", "", "")
	if code != http.StatusOK || ctype != "application/json" || body != `{"max":9}` {
		t.Errorf("after a restart: GET pump/limits = %d %s %q", code, ctype, body)
	}
	if code, _, _ := call(t, "GET", base+"/v1/state/pump/mode", "", ""); code != http.StatusNotFound {
		t.Errorf("after a restart: the deleted key is back (%d)", code)
	}
}

func TestLocalAPIConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub")
	}
	h := startShadowHub(t)
	pw := h.AddDevice(t, device)
	cfg := apiConfig(h.MQTTURL())
	cfg.MQTT.Password = pw
	dir := t.TempDir()
	r, base := startAPI(t, cfg, dir)

	code, _, body := call(t, "GET", base+"/v1/config", "", "")
	if code != http.StatusOK || strings.TrimSpace(body) != `{}` {
		t.Errorf("config without a shadow = %d %s, want {}", code, body)
	}
	code, ctype, body := call(t, "GET", base+"/v1/config/threshold", "", "")
	wantJSONError(t, "a missing key", code, http.StatusNotFound, ctype, body, "threshold")

	h.setDesired(t, device, `{"app":{"threshold":7.5,"pump":{"mode":"auto"}},"log_level":"info"}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, _, body := call(t, "GET", base+"/v1/config", "", ""); strings.TrimSpace(body) != `{"pump":{"mode":"auto"},"threshold":7.5}` {
			return fmt.Errorf("config = %s", body)
		}
		return nil
	})
	for path, want := range map[string]string{"threshold": `7.5`, "pump": `{"mode":"auto"}`, "pump/mode": `"auto"`} {
		if code, _, body := call(t, "GET", base+"/v1/config/"+path, "", ""); code != http.StatusOK || strings.TrimSpace(body) != want {
			t.Errorf("config/%s = %d %s, want %s", path, code, body, want)
		}
	}
	if code, _, _ := call(t, "GET", base+"/v1/config/pump/mode/x", "", ""); code != http.StatusNotFound {
		t.Errorf("config below a string = %d, want 404", code)
	}

	// The saved desired state answers after a restart, hub or no hub.
	r.shutdown(t)
	cfg.MQTT.URL = "mqtt://127.0.0.1:1"
	_, base = startAPI(t, cfg, dir)
	if code, _, body := call(t, "GET", base+"/v1/config/pump/mode", "", ""); code != http.StatusOK || strings.TrimSpace(body) != `"auto"` {
		t.Errorf("config offline after a restart = %d %s", code, body)
	}
}

// fakeServiceHub answers the device service lookups as the hub would.
func fakeServiceHub(t *testing.T, password string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, pw, ok := r.BasicAuth(); !ok || id != device || pw != password {
			http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/api/v1/device/services/")
		if !ok || r.Method != "GET" {
			http.NotFound(w, r)
			return
		}
		insts := []localapi.Instance{}
		if name == "web" {
			insts = append(insts, localapi.Instance{ID: "web-1", Address: "10.0.0.5", Port: 8080, Tags: r.URL.Query()["tag"], Meta: map[string]string{"device": "gw-1"}, Health: "passing"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"service": name, "instances": insts})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLocalAPIServices(t *testing.T) {
	b := brokertest.Start(t, "")
	hub := fakeServiceHub(t, "secret")
	cfg := apiConfig(b.URL)
	cfg.HubURL = hub.URL
	_, base := startAPI(t, cfg, t.TempDir())

	type answer struct {
		Service   string              `json:"service"`
		Instances []localapi.Instance `json:"instances"`
		Cached    bool                `json:"cached"`
		FetchedAt time.Time           `json:"fetched_at"`
	}
	get := func(path string) (int, answer, string) {
		t.Helper()
		code, _, body := call(t, "GET", base+path, "", "")
		var a answer
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatalf("GET %s: %s: %v", path, body, err)
			}
		}
		return code, a, body
	}

	code, fresh, body := get("/v1/services/web?tag=v2")
	if code != http.StatusOK || fresh.Service != "web" || fresh.Cached || fresh.FetchedAt.IsZero() || len(fresh.Instances) != 1 {
		t.Fatalf("from the hub = %d %s", code, body)
	}
	if in := fresh.Instances[0]; in.ID != "web-1" || in.Address != "10.0.0.5" || in.Port != 8080 || !slices.Equal(in.Tags, []string{"v2"}) || in.Meta["device"] != "gw-1" || in.Health != "passing" {
		t.Errorf("instance = %+v", in)
	}
	if code, a, body := get("/v1/services/db"); code != http.StatusOK || a.Instances == nil || len(a.Instances) != 0 || a.Cached {
		t.Errorf("unknown service = %d %s, want no instances", code, body)
	}
	code, ctype, body := call(t, "GET", base+"/v1/services/we%20b", "", "")
	wantJSONError(t, "bad name", code, http.StatusBadRequest, ctype, body, "service name")

	// The hub goes away: the last answer comes from the cache.
	hub.Close()
	code, cached, body := get("/v1/services/web?tag=v2")
	if code != http.StatusOK || !cached.Cached || !cached.FetchedAt.Equal(fresh.FetchedAt) || len(cached.Instances) != 1 || cached.Instances[0].ID != "web-1" {
		t.Errorf("with the hub down = %d %s, want the cached answer", code, body)
	}
	code, ctype, body = call(t, "GET", base+"/v1/services/web?tag=v3", "", "")
	wantJSONError(t, "no cache", code, http.StatusServiceUnavailable, ctype, body, "asking the hub")
}

func TestLocalAPIServicesWrongCredentials(t *testing.T) {
	b := brokertest.Start(t, "")
	hub := fakeServiceHub(t, "other")
	cfg := apiConfig(b.URL)
	cfg.HubURL = hub.URL
	_, base := startAPI(t, cfg, t.TempDir())
	code, ctype, body := call(t, "GET", base+"/v1/services/web", "", "")
	wantJSONError(t, "refused by the hub", code, http.StatusServiceUnavailable, ctype, body, "401")
}

func TestLocalAPIListen(t *testing.T) {
	b := brokertest.Start(t, "")
	for _, addr := range []string{"0.0.0.0:7070", "192.168.1.10:7070", ":7070", "localhost"} {
		cfg := apiConfig(b.URL)
		cfg.API.Listen = addr
		if _, err := New(cfg, Options{DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "api.listen") {
			t.Errorf("api.listen %q: New = %v, want an api.listen error", addr, err)
		}
	}
	cfg := apiConfig(b.URL)
	cfg.API.Listen, cfg.API.AllowRemote = "0.0.0.0:0", true
	_, base := startAPI(t, cfg, t.TempDir())
	if code, _, body := call(t, "GET", base+"/v1", "", ""); code != http.StatusOK {
		t.Errorf("allowed remote listen: GET /v1 = %d %s", code, body)
	}

	// Off: no listener.
	cfg = apiConfig(b.URL)
	cfg.API.Listen = ""
	r := start(t, cfg, t.TempDir())
	testutil.Eventually(t, 10*time.Second, func() error {
		if !r.a.Stats().Running {
			return fmt.Errorf("not running yet")
		}
		return nil
	})
	if addr := r.a.APIAddr(); addr != "" {
		t.Errorf("api.listen off: APIAddr = %q", addr)
	}
}

// TestLocalAPIAddressTaken: a configured address that is taken stops the
// start; the default address being taken (another agent on the host)
// does not.
func TestLocalAPIAddressTaken(t *testing.T) {
	b := brokertest.Start(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := apiConfig(b.URL)
	cfg.API.Listen = ln.Addr().String()
	a, err := New(cfg, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "local API") {
		t.Errorf("Run on a taken address = %v, want a local API error", err)
	}

	def, err := net.Listen("tcp", config.DefaultAPIListen)
	if err != nil {
		t.Skipf("cannot hold the default address for the test: %v", err)
	}
	defer def.Close()
	cfg.API.Listen = config.DefaultAPIListen
	r := start(t, cfg, t.TempDir())
	testutil.Eventually(t, 10*time.Second, func() error {
		if !r.a.Stats().Running {
			return fmt.Errorf("not running yet")
		}
		return nil
	})
	if addr := r.a.APIAddr(); addr != "" {
		t.Errorf("default address taken: APIAddr = %q, want the API off", addr)
	}
}
