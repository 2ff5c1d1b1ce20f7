package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

const fakeDeployToken = "deploy-token"

// fakeDeployHub implements the deployment and service-log endpoints of the
// REST API in memory, as their contract says, so that the CLI can be tested
// without agents running services.
type fakeDeployHub struct {
	t   *testing.T
	srv *httptest.Server

	mu sync.Mutex // guards the fields below
	// apply is the answer to a valid POST /api/v1/deployments.
	apply map[string]any
	// specs are the bodies POST received, contentTypes their Content-Type.
	specs        []string
	contentTypes []string
	// list is the answer to GET /api/v1/deployments.
	list []map[string]any
	// statuses are the answers to GET /api/v1/deployments/{name}, one per
	// call; the last one repeats. An entry with "status" is an error.
	statuses map[string][]map[string]any
	// removed counts the devices DELETE reports per deployment.
	removed map[string]int
	// logs answers GET …/logs: status and body for the query. It is
	// called with mu held.
	logs func(tail, after string) (int, any)
	// requests are "METHOD path?query" of every request.
	requests []string
}

func newFakeDeployHub(t *testing.T) *fakeDeployHub {
	t.Helper()
	h := &fakeDeployHub{t: t, statuses: map[string][]map[string]any{}, removed: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/deployments", h.postDeployment)
	mux.HandleFunc("GET /api/v1/deployments", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		writeBody(w, http.StatusOK, map[string]any{"deployments": h.list})
	})
	mux.HandleFunc("GET /api/v1/deployments/{name}", h.getDeployment)
	mux.HandleFunc("DELETE /api/v1/deployments/{name}", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		n, ok := h.removed[r.PathValue("name")]
		if !ok {
			writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("deployment %q not found", r.PathValue("name")))
			return
		}
		writeBody(w, http.StatusOK, map[string]any{"removed": r.PathValue("name"), "devices": n})
	})
	mux.HandleFunc("GET /api/v1/devices/{id}/services/{service}/logs", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		status, body := h.logs(r.URL.Query().Get("tail"), r.URL.Query().Get("after"))
		writeBody(w, status, body)
	})
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.requests = append(h.requests, r.Method+" "+r.URL.RequestURI())
		h.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+fakeDeployToken {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "invalid or expired token")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeDeployHub) postDeployment(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.specs = append(h.specs, string(body))
	h.contentTypes = append(h.contentTypes, r.Header.Get("Content-Type"))
	problems := []string{"strategy.batch: must be at least 1", `artifact: "web" is not NAME@VERSION`}
	switch {
	case bytes.Contains(body, []byte("INVALID")):
		writeBody(w, http.StatusBadRequest, map[string]any{"error": "invalid deployment spec", "problems": problems})
		return
	case bytes.Contains(body, []byte("BAD")):
		// The error as the usual object, with the problems beside it.
		writeBody(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_spec", "message": "invalid deployment spec"},
			"problems": problems})
		return
	case bytes.Contains(body, []byte("UNKNOWN")):
		writeBody(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "unknown_artifact", "message": `artifact "nope@1" is not published`}})
		return
	case bytes.Contains(body, []byte("PLAIN")):
		writeBody(w, http.StatusBadRequest, map[string]any{"error": "spec is not YAML"})
		return
	}
	status := http.StatusOK
	if h.apply["result"] == "created" {
		status = http.StatusCreated
	}
	writeBody(w, status, h.apply)
}

func (h *fakeDeployHub) getDeployment(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	queue, ok := h.statuses[r.PathValue("name")]
	if !ok || len(queue) == 0 {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("deployment %q not found", r.PathValue("name")))
		return
	}
	st := queue[0]
	if len(queue) > 1 {
		h.statuses[r.PathValue("name")] = queue[1:]
	}
	if code, ok := st["status"].(int); ok {
		writeErr(w, code, "unavailable", "try again")
		return
	}
	writeBody(w, http.StatusOK, st)
}

// requestsMatching returns the recorded requests that start with prefix.
func (h *fakeDeployHub) requestsMatching(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.requests {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// runAt runs outpost against h with its token.
func (h *fakeDeployHub) runAt(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	return run(t, stdin, append([]string{"--hub", h.srv.URL, "--token", fakeDeployToken}, args...)...)
}

// deploySummaryBody is a deployment summary as the hub sends it.
func deploySummaryBody(state string, updated, devices int, message string) map[string]any {
	return map[string]any{"name": "web", "artifact": "websvc@1.0.0", "revision": "1a2b3c4d5e6f7a8b", "state": state,
		"message": message, "devices": devices, "updated": updated,
		"created_at": "2026-11-25T16:00:00Z", "updated_at": "2026-11-25T16:05:00Z"}
}

// deployStatusBody is GET /api/v1/deployments/web with n devices, of which updated
// are on the revision and healthy.
func deployStatusBody(state string, updated, n int, message string) map[string]any {
	st := deploySummaryBody(state, updated, n, message)
	devs := make([]map[string]any, n)
	for i := range n {
		d := map[string]any{"device": fmt.Sprintf("web-%d", i+1), "online": true, "revision": "1a2b3c4d5e6f7a8b",
			"version": "1.0.0", "state": "running", "healthy": i < updated, "restarts": 0, "limits": "cpu=200m,memory=64Mi"}
		if i >= updated {
			d["state"] = "starting"
		}
		devs[i] = d
	}
	st["devices"] = devs
	st["spec"] = map[string]any{"name": "web"}
	return st
}

func writeSpecFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const webYAML = "name: web\nartifact: websvc@1.0.0\nselector: {app: web}\n"

func TestDeployApply(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	file := writeSpecFile(t, webYAML)

	h.apply = map[string]any{"result": "created", "deployment": deploySummaryBody("rolling", 0, 3, "")}
	out, _, err := h.runAt(t, "", "deploy", "apply", "-f", file)
	if err != nil {
		t.Fatal(err)
	}
	if want := "deployment web created: revision 1a2b3c4d…, rolling out (0/3 devices updated and healthy)\n"; out != want {
		t.Errorf("apply printed %q, want %q", out, want)
	}

	// -f - reads stdin; a JSON spec is sent as JSON.
	h.apply = map[string]any{"result": "unchanged", "deployment": deploySummaryBody("complete", 3, 3, "3 devices on revision 1a2b3c4d5e6f7a8b")}
	jsonSpec := `{"name":"web","artifact":"websvc@1.0.0"}`
	out, _, err = h.runAt(t, jsonSpec, "deploy", "apply", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	if want := "deployment web unchanged: revision 1a2b3c4d…, complete (3/3 devices updated and healthy)\n"; out != want {
		t.Errorf("apply printed %q, want %q", out, want)
	}
	h.mu.Lock()
	specs, cts := slices.Clone(h.specs), slices.Clone(h.contentTypes)
	h.mu.Unlock()
	if !slices.Equal(specs, []string{webYAML, jsonSpec}) {
		t.Errorf("hub received %q, want the spec texts as they are", specs)
	}
	if !slices.Equal(cts, []string{"application/yaml", "application/json"}) {
		t.Errorf("Content-Types = %q", cts)
	}

	out, _, err = h.runAt(t, "", "deploy", "apply", "-f", file, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var resp applyResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Result != "unchanged" || resp.Deployment.Name != "web" {
		t.Errorf("apply -o json printed %s (%v)", out, err)
	}

	// Usage errors are found before asking the hub.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "apply"}, "-f is required"},
		{[]string{"deploy", "apply", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, "no such file"},
		{[]string{"deploy", "apply", "-f", "-"}, "spec stdin is empty"},
		{[]string{"deploy", "apply", "-f", file, "--wait", "--timeout", "0s"}, "--timeout 0s: must be positive"},
	} {
		if _, _, err := h.runAt(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
	if n := len(h.requestsMatching("POST")); n != 3 {
		t.Errorf("%d POSTs, want 3 (usage errors must not reach the hub)", n)
	}
}

func TestDeployApplyPrintsEveryProblem(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	for _, marker := range []string{"INVALID", "BAD"} {
		file := writeSpecFile(t, "name: web\nartifact: "+marker+"\n")
		out, _, err := h.runAt(t, "", "deploy", "apply", "-f", file, "--wait")
		if err == nil {
			t.Fatalf("apply of a refused spec succeeded; printed %q", out)
		}
		want := "applying " + file + ": invalid deployment spec\n  strategy.batch: must be at least 1\n  artifact: \"web\" is not NAME@VERSION"
		if err.Error() != want {
			t.Errorf("err =\n%s\nwant\n%s", err, want)
		}
		if out != "" {
			t.Errorf("stdout = %q, want nothing", out)
		}
	}
	if got := h.requestsMatching("GET"); len(got) != 0 {
		t.Errorf("--wait polled after a refusal: %v", got)
	}
	for marker, want := range map[string]string{
		"UNKNOWN": `hub refused: artifact "nope@1" is not published (unknown_artifact)`,
		"PLAIN":   "hub refused: HTTP 400 Bad Request: spec is not YAML",
	} {
		_, _, err := h.runAt(t, "", "deploy", "apply", "-f", writeSpecFile(t, marker))
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to end in %q", marker, err, want)
		}
	}

	// Other refusals keep the usual error shape.
	_, _, err := run(t, "", "--hub", h.srv.URL, "--token", "wrong", "deploy", "apply", "-f", writeSpecFile(t, webYAML))
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "outpost login") {
		t.Errorf("apply with a bad token: %v, want a 401 with the login hint", err)
	}
}

func TestDeployApplyWait(t *testing.T) {
	tests := []struct {
		name     string
		statuses []map[string]any
		timeout  string
		wantErr  string // empty: success
		wantOut  []string
	}{
		{
			name: "complete",
			statuses: []map[string]any{deployStatusBody("rolling", 0, 3, ""), {"status": http.StatusServiceUnavailable},
				deployStatusBody("rolling", 2, 3, ""), deployStatusBody("rolling", 2, 3, ""), deployStatusBody("complete", 3, 3, "3 devices on revision 1a2b3c4d5e6f7a8b")},
			wantOut: []string{"rolling: 0/3 devices updated and healthy", "rolling: 2/3 devices updated and healthy",
				"complete: 3/3 devices updated and healthy", "deployment web complete: revision 1a2b3c4d… on 3/3 devices updated and healthy"},
		},
		{
			name:     "failed",
			statuses: []map[string]any{deployStatusBody("rolling", 1, 3, ""), deployStatusBody("failed", 0, 3, "batch 1: web-1 did not become healthy within 15s; batch rolled back")},
			wantErr:  "deployment web failed: batch 1: web-1 did not become healthy within 15s; batch rolled back",
			wantOut:  []string{"rolling: 1/3 devices updated and healthy", "failed: 0/3 devices updated and healthy"},
		},
		{
			name:     "timeout",
			statuses: []map[string]any{deployStatusBody("rolling", 1, 3, "")},
			timeout:  "400ms",
			wantErr:  "deployment web did not complete within 400ms: still rolling, 1/3 devices updated and healthy",
			wantOut:  []string{"rolling: 1/3 devices updated and healthy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			h := newFakeDeployHub(t)
			h.apply = map[string]any{"result": "updated", "deployment": deploySummaryBody("rolling", 0, 3, "")}
			h.statuses["web"] = tt.statuses
			args := []string{"deploy", "apply", "-f", writeSpecFile(t, webYAML), "--wait", "--interval", "100ms"}
			if tt.timeout != "" {
				args = append(args, "--timeout", tt.timeout)
			}
			out, stderr, err := h.runAt(t, "", args...)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("apply --wait: %v\n%s", err, out)
			}
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("apply --wait err = %v, want %q", err, tt.wantErr)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !strings.HasPrefix(lines[0], "deployment web updated: revision 1a2b3c4d…, rolling out") {
				t.Errorf("first line = %q", lines[0])
			}
			var got []string
			for _, l := range lines[1:] {
				// Progress lines start with the time of day.
				got = append(got, regexp.MustCompile(`^\d\d:\d\d:\d\d  `).ReplaceAllString(l, ""))
			}
			if !slices.Equal(got, tt.wantOut) {
				t.Errorf("progress =\n%s\nwant (each change once)\n%s", strings.Join(got, "\n"), strings.Join(tt.wantOut, "\n"))
			}
			if tt.name == "complete" && !strings.Contains(stderr, "try again") {
				t.Errorf("a 503 while waiting was not reported on stderr: %q", stderr)
			}
		})
	}
}

func TestDeployListStatusRemove(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	now := time.Now()
	db := deploySummaryBody("failed", 1, 2, "batch 1 failed")
	db["name"], db["artifact"], db["revision"] = "db", "pg@16.1", "ffee"
	db["created_at"] = now.Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	web := deploySummaryBody("rolling", 2, 3, "")
	web["created_at"] = now.Add(-5 * time.Minute).UnixMilli() // Unix milliseconds are understood too
	h.list = []map[string]any{db, web}

	out, _, err := h.runAt(t, "", "deploy", "ls")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, re := range []string{
		`^NAME\s+ARTIFACT\s+REVISION\s+STATE\s+UPDATED/DEVICES\s+AGE$`,
		`^db\s+pg@16\.1\s+ffee\s+failed\s+1/2\s+3h$`,
		`^web\s+websvc@1\.0\.0\s+1a2b3c4d…\s+rolling\s+2/3\s+5m$`,
	} {
		if i >= len(lines) || !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("ls line %d does not match %s:\n%s", i, re, out)
		}
	}
	if out, _, err := h.runAt(t, "", "deploy", "ls", "-o", "json"); err != nil || !json.Valid([]byte(out)) || !strings.Contains(out, `"deployments"`) {
		t.Errorf("ls -o json = %q, %v", out, err)
	}

	st := deployStatusBody("rolling", 1, 3, "batch 1 of 3")
	devs := st["devices"].([]map[string]any)
	devs[1]["online"], devs[1]["restarts"], devs[1]["error"] = false, 4, "health check: connection refused"
	devs[1]["last_exit"] = map[string]any{"code": 137, "signal": "SIGKILL", "reason": "oom_killed", "error": "memory limit 64Mi", "time": now.Add(-2 * time.Minute).UnixMilli()}
	devs[2]["last_exit"] = map[string]any{"code": 1, "reason": "error", "time": now.Add(-time.Minute).UnixMilli()}
	devs[2]["limits"] = nil
	h.statuses["web"] = []map[string]any{st}

	out, _, err = h.runAt(t, "", "deploy", "status", "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^Deployment:\s+web$`, `(?m)^Artifact:\s+websvc@1\.0\.0$`, `(?m)^Revision:\s+1a2b3c4d5e6f7a8b$`,
		`(?m)^State:\s+rolling$`, `(?m)^Message:\s+batch 1 of 3$`, `(?m)^Devices:\s+1/3 devices updated and healthy$`,
		`(?m)^DEVICE\s+ONLINE\s+REVISION\s+VERSION\s+STATE\s+HEALTHY\s+RESTARTS\s+LAST-EXIT\s+LIMITS$`,
		`(?m)^web-1\s+yes\s+1a2b3c4d…\s+1\.0\.0\s+running\s+yes\s+0\s+-\s+cpu=200m,memory=64Mi$`,
		`(?m)^web-2\s+no\s+1a2b3c4d…\s+1\.0\.0\s+starting\s+no\s+4\s+oom_killed \(signal SIGKILL\) 2m ago\s+cpu=200m,memory=64Mi$`,
		`(?m)^web-3\s+yes\s+1a2b3c4d…\s+1\.0\.0\s+starting\s+no\s+0\s+error \(code 1\) 1m ago\s+-$`,
		`(?m)^Errors:\n  web-2: health check: connection refused\n  web-2: last exit: memory limit 64Mi\n\z`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}
	out, _, err = h.runAt(t, "", "deploy", "status", "web", "-o", "json")
	if err != nil || !strings.Contains(out, `"spec": {`) || !strings.Contains(out, `"device": "web-1"`) {
		t.Errorf("status -o json = %s, %v; want the hub's answer", out, err)
	}
	_, _, err = h.runAt(t, "", "deploy", "status", "nope")
	if err == nil || !strings.Contains(err.Error(), `showing deployment "nope": hub refused: deployment "nope" not found (not_found)`) {
		t.Errorf("status of an unknown deployment: %v", err)
	}

	h.removed["web"] = 3
	out, _, err = h.runAt(t, "", "deploy", "rm", "web")
	if err != nil || out != "deployment web removed; its service stops on 3 devices\n" {
		t.Errorf("rm = %q, %v", out, err)
	}
	if got := h.requestsMatching("DELETE"); !slices.Equal(got, []string{"DELETE /api/v1/deployments/web"}) {
		t.Errorf("requests = %v", got)
	}
	_, _, err = h.runAt(t, "", "deploy", "rm", "nope")
	if err == nil || !strings.Contains(err.Error(), `removing deployment "nope"`) || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("rm of an unknown deployment: %v", err)
	}
}

// logLines are lines from seq from to to, as the device sends them.
func logLines(from, to int) []map[string]any {
	var out []map[string]any
	for s := from; s <= to; s++ {
		out = append(out, map[string]any{"seq": s, "time": time.Date(2026, 11, 25, 16, 0, s, 0, time.UTC).UnixMilli(), "line": fmt.Sprintf("line %d", s)})
	}
	return out
}

func logsBody(lines []map[string]any, last int) map[string]any {
	return map[string]any{"id": "r1", "service": "web", "lines": lines, "last": last}
}

func TestLogsTail(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	h.logs = func(tail, after string) (int, any) {
		lines := logLines(1, 3)
		lines[1]["line"] = "evil \x1b[2Jclear\tand tab"
		return http.StatusOK, logsBody(lines, 3)
	}
	out, _, err := h.runAt(t, "", "logs", "web-1", "web", "--tail", "5")
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 1\nevil \uFFFD[2Jclear\tand tab\nline 3\n"; out != want {
		t.Errorf("logs printed %q, want %q", out, want)
	}
	if got := h.requestsMatching("GET"); !slices.Equal(got, []string{"GET /api/v1/devices/web-1/services/web/logs?tail=5"}) {
		t.Errorf("requests = %v", got)
	}
	out, _, err = h.runAt(t, "", "logs", "web-1", "web", "--timestamps")
	if err != nil || !strings.HasPrefix(out, "2026-11-25T16:00:01.000Z line 1\n") {
		t.Errorf("logs --timestamps printed %q, %v", out, err)
	}
	if got := h.requestsMatching("GET"); got[len(got)-1] != "GET /api/v1/devices/web-1/services/web/logs?tail=100" {
		t.Errorf("default --tail: request %s", got[len(got)-1])
	}

	for _, tt := range []struct {
		status int
		body   any
		want   string
	}{
		{http.StatusConflict, map[string]any{"error": map[string]string{"code": "conflict", "message": "device web-1 is offline"}}, "(the device is offline)"},
		{http.StatusGatewayTimeout, map[string]any{"error": map[string]string{"code": "timeout", "message": "no answer"}}, "(the device did not answer in time)"},
		{http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": `service "web" not found`}}, `service "web" not found`},
		{http.StatusOK, map[string]any{"id": "r", "service": "web", "lines": nil, "last": 0, "error": "no such service"}, "the device says: no such service"},
	} {
		h.mu.Lock()
		h.logs = func(string, string) (int, any) { return tt.status, tt.body }
		h.mu.Unlock()
		_, _, err := h.runAt(t, "", "logs", "web-1", "web")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("answer %d: err = %v, want %q", tt.status, err, tt.want)
		}
	}
	if _, _, err := h.runAt(t, "", "logs", "web-1", "web", "--tail", "1001"); err == nil || !strings.Contains(err.Error(), "--tail 1001") {
		t.Errorf("--tail 1001: %v", err)
	}
}

func TestLogsFollow(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	var calls int
	h.logs = func(tail, after string) (int, any) {
		calls++ // h.mu is held
		switch after {
		case "":
			return http.StatusOK, logsBody(logLines(1, 3), 3)
		case "3":
			return http.StatusOK, logsBody(logLines(4, 5), 5)
		case "5":
			if calls < 5 {
				// The device went offline, then did not answer: the
				// follow says so on stderr and goes on.
				if calls == 3 {
					return http.StatusConflict, map[string]any{"error": map[string]string{"code": "conflict", "message": "device web-1 is offline"}}
				}
				return http.StatusGatewayTimeout, map[string]any{"error": map[string]string{"code": "timeout", "message": "no answer"}}
			}
			// Lines 6 and 7 were dropped by the device.
			return http.StatusOK, logsBody(logLines(8, 8), 8)
		default:
			return http.StatusOK, logsBody(nil, 8)
		}
	}
	var stdout, stderr syncBuffer
	root := NewRoot(&stdout, &stderr)
	root.SetArgs([]string{"--hub", h.srv.URL, "--token", fakeDeployToken, "logs", "web-1", "web", "-f", "--tail", "3", "--interval", "100ms"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	testutil.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(stdout.String(), "line 8\n") {
			return fmt.Errorf("follow printed so far:\n%s", stdout.String())
		}
		return nil
	})
	// It keeps asking for what comes after the last line.
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(h.requestsMatching("GET /api/v1/devices/web-1/services/web/logs?after=8")); n < 2 {
			return fmt.Errorf("%d requests with after=8", n)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow returned %v after interrupt, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop when its context ended")
	}

	if want := "line 1\nline 2\nline 3\nline 4\nline 5\nline 8\n"; stdout.String() != want {
		t.Errorf("follow printed %q, want %q", stdout.String(), want)
	}
	for _, want := range []string{"(the device is offline) (retrying every 100ms)", "(the device did not answer in time) (retrying every 100ms)",
		"the device answers again", "2 lines not shown"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	reqs := h.requestsMatching("GET")
	want := []string{"GET /api/v1/devices/web-1/services/web/logs?tail=3", "GET /api/v1/devices/web-1/services/web/logs?after=3&tail=1000",
		"GET /api/v1/devices/web-1/services/web/logs?after=5&tail=1000"}
	if len(reqs) < 3 || !slices.Equal(reqs[:3], want) {
		t.Errorf("requests = %v, want them to start with %v", reqs, want)
	}
}

// TestLogsFollowAgentRestart: sequence numbers start again at 1 when the
// agent restarts; follow notices and prints the new lines.
func TestLogsFollowAgentRestart(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	h.logs = func(tail, after string) (int, any) {
		switch after {
		case "":
			if tail == "100" {
				return http.StatusOK, logsBody(logLines(1, 9), 9)
			}
			// After the restart: asked from the start again.
			return http.StatusOK, logsBody(logLines(1, 2), 2)
		case "9":
			return http.StatusOK, logsBody(nil, 2)
		default:
			return http.StatusOK, logsBody(nil, 2)
		}
	}
	var stdout, stderr syncBuffer
	root := NewRoot(&stdout, &stderr)
	root.SetArgs([]string{"--hub", h.srv.URL, "--token", fakeDeployToken, "logs", "web-1", "web", "--follow", "--interval", "100ms"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := len(h.requestsMatching("GET /api/v1/devices/web-1/services/web/logs?after=2")); n < 1 {
			return fmt.Errorf("follow has not caught up after the restart; printed:\n%s", stdout.String())
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow returned %v", err)
	}
	if want := "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\nline 1\nline 2\n"; stdout.String() != want {
		t.Errorf("printed %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "the agent restarted") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

// TestLogsFollowStopsOnRefusal: a refusal that will not go away by itself
// ends the follow.
func TestLogsFollowStopsOnRefusal(t *testing.T) {
	cleanEnv(t)
	h := newFakeDeployHub(t)
	h.logs = func(string, string) (int, any) {
		return http.StatusNotFound, map[string]any{"error": map[string]string{"code": "not_found", "message": `device "x" not found`}}
	}
	_, _, err := h.runAt(t, "", "logs", "x", "web", "--follow")
	if err == nil || !strings.Contains(err.Error(), `following logs of service web on x: hub refused: device "x" not found`) {
		t.Errorf("follow of an unknown device: %v", err)
	}
}

func TestParseLabelChanges(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		in      []string
		want    map[string]*string
		wantErr []string
	}{
		{in: []string{"a=b", "c=", "k=v=w", "old-", "x-y=1"}, want: map[string]*string{"a": s("b"), "c": s(""), "k": s("v=w"), "old": nil, "x-y": s("1")}},
		{in: []string{"a=b", "a=b", "gone-", "gone-"}, want: map[string]*string{"a": s("b"), "gone": nil}},
		{in: []string{"a"}, wantErr: []string{`"a": want KEY=VALUE to set a label or KEY- to remove one`}},
		{in: []string{"=b", "-"}, wantErr: []string{`"=b": key is empty`, `"-": key is empty`}},
		{in: []string{"a=1", "a=2", "b=1", "b-"}, wantErr: []string{`"a=2": label "a" is changed twice`, `"b-": label "b" is changed twice`}},
	}
	for _, tt := range tests {
		got, err := parseLabelChanges(tt.in)
		if len(tt.wantErr) > 0 {
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("parseLabelChanges(%q) err = %v, want %q", tt.in, err, w)
				}
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("parseLabelChanges(%q) = %v, %v", tt.in, got, err)
			continue
		}
		for k, v := range tt.want {
			g, ok := got[k]
			if !ok || (v == nil) != (g == nil) || (v != nil && *v != *g) {
				t.Errorf("parseLabelChanges(%q)[%q] wrong", tt.in, k)
			}
		}
	}
}

// TestDevicesLabelWithRealHub changes labels through a real hub and sees
// them with "devices show" and label selection.
func TestDevicesLabelWithRealHub(t *testing.T) {
	startRealHub(t)
	mustRun(t, "devices", "add", "pump-7", "--label", "site=plant-1", "--label", "old=x")

	out := mustRun(t, "devices", "label", "pump-7", "line=3", "site=plant-2", "old-")
	if out != "Labels of pump-7: line=3,site=plant-2\n" {
		t.Errorf("label printed %q", out)
	}
	show := mustRun(t, "devices", "show", "pump-7")
	if !regexp.MustCompile(`(?m)^Labels:\s+line=3,site=plant-2$`).MatchString(show) {
		t.Errorf("show after label:\n%s", show)
	}
	if ls := mustRun(t, "devices", "ls", "--label", "site=plant-2"); !strings.Contains(ls, "pump-7") {
		t.Errorf("ls --label site=plant-2 does not list pump-7:\n%s", ls)
	}

	out = mustRun(t, "devices", "label", "pump-7", "line-", "site-", "-o", "json")
	var d device
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.ID != "pump-7" || len(d.Labels) != 0 {
		t.Errorf("label -o json = %s (%v), want pump-7 without labels", out, err)
	}
	if show := mustRun(t, "devices", "show", "pump-7"); !regexp.MustCompile(`(?m)^Labels:\s+-$`).MatchString(show) {
		t.Errorf("show after removing every label:\n%s", show)
	}

	// The hub lists every problem and changes nothing.
	_, _, err := run(t, "", "devices", "label", "pump-7", "bad key=v", "long="+strings.Repeat("x", 256), "ok=1")
	if err == nil || !strings.Contains(err.Error(), `label key "bad key"`) || !strings.Contains(err.Error(), `label "long": value longer than 255 bytes`) {
		t.Errorf("invalid labels: err = %v, want both problems", err)
	}
	if show := mustRun(t, "devices", "show", "pump-7"); !regexp.MustCompile(`(?m)^Labels:\s+-$`).MatchString(show) {
		t.Errorf("a refused change changed labels:\n%s", show)
	}
	_, _, err = run(t, "", "devices", "label", "nope", "a=b")
	if err == nil || !strings.Contains(err.Error(), `changing labels of device "nope"`) || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("label of an unknown device: %v", err)
	}
	_, _, err = run(t, "", "devices", "label", "pump-7", "a")
	if err == nil || !strings.Contains(err.Error(), "want KEY=VALUE") {
		t.Errorf("malformed argument: %v", err)
	}
}

// TestDeployWithRealHub checks the commands against the hub's real
// deployment endpoints, as far as they go without agents.
func TestDeployWithRealHub(t *testing.T) {
	startRealHub(t)
	out := mustRun(t, "deploy", "ls")
	if !regexp.MustCompile(`^NAME\s+ARTIFACT\s+REVISION\s+STATE\s+UPDATED/DEVICES\s+AGE\n$`).MatchString(out) {
		t.Errorf("deploy ls without deployments = %q", out)
	}
	_, _, err := run(t, "name: web\nartifact: websvc@1.0.0\nstrategy: {batch: 0}\nports: [0]\n", "deploy", "apply", "-f", "-")
	if err == nil || !regexp.MustCompile(`^applying stdin: .+\n  strategy\.batch: .+\n  ports\[0\]: .+$`).MatchString(err.Error()) {
		t.Errorf("apply of an invalid spec: err = %v, want both problems on their own lines", err)
	}
	for _, args := range [][]string{{"deploy", "status", "nope"}, {"deploy", "rm", "nope"}, {"logs", "nope", "web"}} {
		var ae *apiError
		if _, _, err := run(t, "", args...); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Errorf("%v: err = %v, want a 404", args, err)
		}
	}
	mustRun(t, "devices", "add", "pump-7")
	var ae *apiError
	if _, _, err := run(t, "", "logs", "pump-7", "web"); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("logs of a device that never connected: err = %v, want a 409", err)
	}
}

func TestDeployAndLogsHelpHaveExamples(t *testing.T) {
	cleanEnv(t)
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range [][]string{{"deploy"}, {"deploy", "apply"}, {"deploy", "ls"}, {"deploy", "status"},
		{"deploy", "rm"}, {"logs"}, {"devices", "label"}} {
		c, _, err := root.Find(name)
		if err != nil {
			t.Fatalf("%v: %v", name, err)
		}
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%v: Short, Long or Example missing", name)
		}
	}
}
