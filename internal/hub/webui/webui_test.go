package webui_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hub/webui"
)

func TestHandlerServesAssets(t *testing.T) {
	srv := httptest.NewServer(webui.Handler())
	defer srv.Close()
	tests := []struct {
		path, method string
		status       int
		contentType  string
		bodyHas      string
	}{
		{"/", "GET", 200, "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/index.html", "GET", 200, "text/html; charset=utf-8", "<title>Outpost dashboard</title>"},
		{"/app.js", "GET", 200, "text/javascript; charset=utf-8", "'use strict';"},
		{"/style.css", "GET", 200, "text/css; charset=utf-8", ":root"},
		{"/", "HEAD", 200, "text/html; charset=utf-8", ""},
		{"/nope.js", "GET", 404, "", ""},
		{"/assets/app.js", "GET", 404, "", ""},
		{"/", "POST", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != webui.CSP {
				t.Errorf("Content-Security-Policy = %q, want %q", got, webui.CSP)
			}
			if tt.status != 200 {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control = %q, want no-cache", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if !strings.Contains(string(body), tt.bodyHas) {
				t.Errorf("body lacks %q", tt.bodyHas)
			}
		})
	}
}

func TestCSPIsStrict(t *testing.T) {
	want := "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
	if webui.CSP != want {
		t.Fatalf("CSP = %q, want %q", webui.CSP, want)
	}
}

// TestAssetsStayOnTheHub checks without a browser that the page cannot ask
// another host for anything: no absolute or protocol-relative URL in any
// embedded file, and no inline script or style, which the CSP would block
// anyway (so the page would break rather than leak).
func TestAssetsStayOnTheHub(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:|wss?:|ftp:)?//[a-z0-9][a-z0-9.-]*\.[a-z]{2,}|https?://|wss?://|(src|href|action)\s*=\s*["']?//|url\(\s*["']?//|@import`)
	unsafe := map[string]*regexp.Regexp{
		// Inline script, style and handlers would be refused by the CSP.
		".html": regexp.MustCompile(`(?i)<script>|<script\s+[^s>]*>|<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:`),
		// Markup built from strings could carry device-supplied HTML.
		".js":  regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|eval\(|new Function\(|setAttribute\(\s*'style'`),
		".css": regexp.MustCompile(`(?i)expression\(|javascript:`),
	}
	fsys := webui.Assets()
	n := 0
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		raw, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(raw), "\n") {
			if m := external.FindString(line); m != "" {
				t.Errorf("%s:%d: reference to another host %q: %s", path, i+1, m, strings.TrimSpace(line))
			}
			if m := unsafe[filepath.Ext(path)].FindString(line); m != "" {
				t.Errorf("%s:%d: inline code or unsafe DOM write %q: %s", path, i+1, m, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("scanned %d files, want 3 (index.html, app.js, style.css)", n)
	}
}

// TestHubServesUI runs a whole hub: the dashboard is at / and /index.html,
// and the API's routes, including its 404s, still answer JSON.
func TestHubServesUI(t *testing.T) {
	h := hubtest.Start(t)
	get := func(t *testing.T, path string) (*http.Response, string) {
		t.Helper()
		resp, err := h.Client.Get(h.HTTPURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for _, p := range []string{"/", "/index.html", "/app.js", "/style.css"} {
		t.Run("ui "+p, func(t *testing.T) {
			resp, _ := get(t, p)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != webui.CSP {
				t.Fatalf("status %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
	tests := []struct {
		path        string
		status      int
		contentType string
		bodyHas     string
	}{
		{"/healthz", 200, "application/json", `"ok"`},
		{"/api/v1/devices", 401, "application/json", `"unauthorized"`},
		{"/api/v1/nope", 404, "application/json", `"not_found"`},
		{"/api/v1/", 404, "application/json", `"not_found"`},
		{"/api/", 404, "application/json", `"not_found"`},
		{"/nope", 404, "application/json", `"not_found"`},
		{"/metrics", 200, "text/plain", "outpost_"},
	}
	for _, tt := range tests {
		t.Run("api "+tt.path, func(t *testing.T) {
			resp, body := get(t, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			if resp.Header.Get("Content-Security-Policy") != "" || strings.Contains(body, "<html") {
				t.Errorf("the dashboard answered %s", tt.path)
			}
			if !strings.Contains(body, tt.bodyHas) {
				t.Errorf("body %q lacks %q", body, tt.bodyHas)
			}
		})
	}
}
