// Package hubtest runs a real hub in-process for tests: free ports, a
// temporary data directory, logged in as admin, stopped at the end of the
// test. It is imported only by _test.go files.
package hubtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
)

// Hub is a running in-process hub with an admin API token.
type Hub struct {
	*hub.Hub
	// DataDir is the hub's data directory.
	DataDir string
	// Token is an admin API token.
	Token string
	// Client sends the API calls; keep-alives are off so that a stopped
	// hub leaves no idle connection behind for goleak to find.
	Client *http.Client
}

// Start runs a hub until the test ends; the hub must stop cleanly then.
// With -v the hub logs to stderr.
func Start(t testing.TB) *Hub {
	t.Helper()
	cfg := hub.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0"
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := hub.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatalf("starting hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	th := &Hub{Hub: h, DataDir: cfg.DataDir, Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub stopped with error: %v", err)
		}
	})
	var login struct{ Token string }
	th.API(t, "POST", "/api/v1/auth/login", map[string]string{"username": hub.AdminUser, "password": th.AdminPassword(t)}, http.StatusOK, &login)
	th.Token = login.Token
	return th
}

// AdminPassword returns the password the hub generated for admin.
func (h *Hub) AdminPassword(t testing.TB) string {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(h.DataDir, hub.AdminPasswordFileName))
	if err != nil {
		t.Fatalf("reading generated admin password: %v", err)
	}
	return strings.TrimSpace(string(pw))
}

// API calls the REST API as admin, fails the test unless the answer has
// wantStatus, and decodes the body into out when out is not nil.
func (h *Hub) API(t testing.TB, method, path string, body any, wantStatus int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("%s %s: encoding body: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.HTTPURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, wantStatus, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
}

// AddDevice registers and joins a device and returns its MQTT password.
func (h *Hub) AddDevice(t testing.TB, id string) string {
	t.Helper()
	var add struct {
		JoinToken string `json:"join_token"`
	}
	h.API(t, "POST", "/api/v1/devices", map[string]any{"id": id}, http.StatusCreated, &add)
	var cred struct {
		MQTTPassword string `json:"mqtt_password"`
	}
	h.API(t, "POST", "/api/v1/join", map[string]string{"token": add.JoinToken}, http.StatusOK, &cred)
	return cred.MQTTPassword
}
