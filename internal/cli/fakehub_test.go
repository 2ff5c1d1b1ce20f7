package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHub implements the endpoints of docs/api.md that the client commands
// use, in memory. It records the last request for assertions.
type fakeHub struct {
	t        *testing.T
	srv      *httptest.Server
	password string
	token    string
	expires  time.Time

	mu       sync.Mutex // guards the fields below
	devices  map[string]*fakeDevice
	points   map[string][]map[string]any
	lastAuth string
	lastPath string
	lastQry  url.Values
	tokenSeq int
}

type fakeDevice struct {
	ID           string            `json:"id"`
	Labels       map[string]string `json:"labels"`
	CreatedAt    time.Time         `json:"created_at"`
	Joined       bool              `json:"joined"`
	Online       bool              `json:"online"`
	LastSeen     *time.Time        `json:"last_seen,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Spool        map[string]any    `json:"spool,omitempty"`
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	h := &fakeHub{
		t:        t,
		password: "s3cret",
		token:    "jwt-" + strings.ReplaceAll(t.Name(), "/", "-"),
		expires:  time.Now().Add(12 * time.Hour).UTC().Truncate(time.Second),
		devices:  map[string]*fakeDevice{},
		points:   map[string][]map[string]any{},
	}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) URL() string { return h.srv.URL }

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastAuth = r.Header.Get("Authorization")
	h.lastPath = r.URL.EscapedPath()
	h.lastQry = r.URL.Query()

	if r.Method == http.MethodPost && r.URL.Path == "/api/v1/auth/login" {
		var req struct{ Username, Password string }
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			writeErr(w, 400, "bad_request", err.Error())
			return
		}
		if req.Username != "admin" || req.Password != h.password {
			writeErr(w, 401, "unauthorized", "wrong user or password")
			return
		}
		writeBody(w, 200, map[string]any{"token": h.token, "expires_at": h.expires})
		return
	}
	if h.lastAuth != "Bearer "+h.token {
		writeErr(w, 401, "unauthorized", "token is missing or invalid")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/devices")
	if !ok {
		writeErr(w, 404, "not_found", "no such endpoint")
		return
	}
	switch {
	case rest == "" && r.Method == http.MethodGet:
		want := r.URL.Query()["label"]
		list := []*fakeDevice{}
	devices:
		for _, d := range h.devices {
			for _, l := range want {
				k, v, _ := strings.Cut(l, "=")
				if d.Labels[k] != v {
					continue devices
				}
			}
			list = append(list, d)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		writeBody(w, 200, map[string]any{"devices": list})
	case rest == "" && r.Method == http.MethodPost:
		var req struct {
			ID     string            `json:"id"`
			Labels map[string]string `json:"labels"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, 400, "bad_request", err.Error())
			return
		}
		if _, dup := h.devices[req.ID]; dup {
			writeErr(w, 409, "conflict", "device \""+req.ID+"\" exists already")
			return
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		d := &fakeDevice{ID: req.ID, Labels: req.Labels, CreatedAt: time.Now().UTC()}
		h.devices[req.ID] = d
		writeBody(w, 201, h.joinBody(d))
	default:
		parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
		d, ok := h.devices[parts[0]]
		if !ok {
			writeErr(w, 404, "not_found", "device \""+parts[0]+"\" not found")
			return
		}
		switch {
		case len(parts) == 1 && r.Method == http.MethodGet:
			writeBody(w, 200, d)
		case len(parts) == 1 && r.Method == http.MethodDelete:
			delete(h.devices, d.ID)
			w.WriteHeader(204)
		case len(parts) == 2 && parts[1] == "join-token" && r.Method == http.MethodPost:
			writeBody(w, 201, h.joinBody(d))
		case len(parts) == 2 && parts[1] == "telemetry" && r.Method == http.MethodGet:
			pts := h.points[d.ID]
			if pts == nil {
				pts = []map[string]any{}
			}
			writeBody(w, 200, map[string]any{"device": d.ID, "points": pts})
		default:
			writeErr(w, 404, "not_found", "no such endpoint")
		}
	}
}

// joinBody returns the body of a device creation or join-token response;
// h.mu must be held.
func (h *fakeHub) joinBody(d *fakeDevice) map[string]any {
	h.tokenSeq++
	tok := "ojt_" + d.ID + "_" + string(rune('0'+h.tokenSeq))
	return map[string]any{
		"device":                d,
		"join_token":            tok,
		"join_token_expires_at": "2030-01-02T03:04:05Z",
		"join_command":          "outpost-agent join --hub " + h.srv.URL + " --token " + tok,
	}
}

// addDevice registers a device directly.
func (h *fakeHub) addDevice(d *fakeDevice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now().UTC()
	}
	h.devices[d.ID] = d
}

func (h *fakeHub) hasDevice(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.devices[id]
	return ok
}

// last returns the Authorization header, escaped path and query of the last request.
func (h *fakeHub) last() (auth, path string, q url.Values) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastAuth, h.lastPath, h.lastQry
}
