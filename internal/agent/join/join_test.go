package join

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/agent/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeHub answers POST /api/v1/join like the hub: the token "ojt_good"
// works once.
func fakeHub(t *testing.T) *httptest.Server {
	t.Helper()
	used := false
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/join", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var req struct{ Token string }
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case req.Token == "ojt_good" && !used:
			used = true
			_ = json.NewEncoder(w).Encode(map[string]any{
				"device_id": "pump-7", "hub_url": "http://hub.example:8080", "mqtt_url": "mqtt://hub.example:1883",
				"mqtt_username": "pump-7", "mqtt_password": "s3cret",
				"tuf_root": map[string]any{"signed": map[string]any{"_type": "root", "version": 1}},
			})
		case req.Token == "ojt_good":
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"join token already used"}}`)
		case req.Token == "ojt_broken":
			_, _ = io.WriteString(w, `{"device_id":"pump 7","mqtt_url":"http://x"}`)
		default:
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"unknown join token"}}`)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestJoin(t *testing.T) {
	hub := fakeHub(t)
	res, err := Join(context.Background(), hub.URL+"/", " ojt_good\n", hub.Client())
	c := res.Config
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if string(res.TUFRoot) != `{"signed":{"_type":"root","version":1}}` {
		t.Errorf("TUFRoot = %s, want the hub's tuf_root verbatim", res.TUFRoot)
	}
	want := config.Default()
	want.DeviceID, want.HubURL = "pump-7", "http://hub.example:8080"
	want.MQTT.URL, want.MQTT.Username, want.MQTT.Password = "mqtt://hub.example:1883", "pump-7", "s3cret"
	if c.DeviceID != want.DeviceID || c.HubURL != want.HubURL || c.MQTT != want.MQTT || len(c.Sources) != 3 {
		t.Errorf("config = %+v\nwant %+v", c, want)
	}

	// The token works once; the hub's message reaches the user verbatim.
	_, err = Join(context.Background(), hub.URL, "ojt_good", hub.Client())
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != 401 || re.Code != "unauthorized" {
		t.Fatalf("second Join = %v, want a RefusedError with 401 unauthorized", err)
	}
	if err.Error() != "join refused: join token already used" {
		t.Errorf("error = %q", err)
	}
}

func TestJoinFailures(t *testing.T) {
	hub := fakeHub(t)
	notHub := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notHub.Close)
	tests := []struct {
		name, hubURL, token, want string
	}{
		{"unknown token", hub.URL, "ojt_nope", "join refused: unknown join token"},
		{"bad answer", hub.URL, "ojt_broken", "unusable configuration"},
		{"not a hub", notHub.URL, "ojt_x", "404 Not Found"},
		{"empty token", hub.URL, "  ", "token is empty"},
		{"bad hub url", "hub.example:8080", "ojt_x", "must be http://"},
		{"unreachable", "http://127.0.0.1:1", "ojt_x", "contacting the hub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Join(context.Background(), tt.hubURL, tt.token, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Join = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
