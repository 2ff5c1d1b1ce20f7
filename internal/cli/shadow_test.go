package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// startRealHub runs a hub in-process on free ports, logs the CLI in to it
// and returns its URL.
func startRealHub(t *testing.T) string {
	t.Helper()
	cleanEnv(t)
	cfg := hub.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	h, err := hub.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatalf("starting hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	pw, err := os.ReadFile(filepath.Join(cfg.DataDir, hub.AdminPasswordFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, string(pw), "login", "--hub", h.HTTPURL(), "--user", "admin", "--password-stdin"); err != nil {
		t.Fatalf("login: %v", err)
	}
	return h.HTTPURL()
}

// desiredOf returns the desired state of a device's shadow as compact JSON.
func desiredOf(t *testing.T, args ...string) (string, int64) {
	t.Helper()
	out := mustRun(t, append([]string{"shadow", "get", "-o", "json"}, args...)...)
	var doc struct {
		State struct {
			Desired json.RawMessage `json:"desired"`
		} `json:"state"`
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("shadow get -o json printed %q: %v", out, err)
	}
	var buf bytes.Buffer
	if len(doc.State.Desired) > 0 {
		json.Compact(&buf, doc.State.Desired)
	}
	return buf.String(), doc.Version
}

func TestShadowSetAndGet(t *testing.T) {
	startRealHub(t)
	mustRun(t, "devices", "add", "pump-7")

	out := mustRun(t, "shadow", "set", "pump-7", "sources.temperature.interval=200ms", "sources.temperature.enabled=true",
		"report.deadband=0.50", `site.code="42"`, "tags=[1,2]")
	if !strings.Contains(out, "Updated the desired state of pump-7; shadow version 1 (pending") {
		t.Errorf("set printed:\n%s", out)
	}
	for _, want := range []string{"sources.temperature.interval", `"200ms"`, "pending", "KEY", "DESIRED", "REPORTED", "STATUS"} {
		if !strings.Contains(out, want) {
			t.Errorf("set output lacks %q:\n%s", want, out)
		}
	}
	desired, v := desiredOf(t, "pump-7")
	want := `{"report":{"deadband":0.50},"site":{"code":"42"},"sources":{"temperature":{"enabled":true,"interval":"200ms"}},"tags":[1,2]}`
	if desired != want || v != 1 {
		t.Errorf("desired = %s (version %d), want %s (version 1)", desired, v, want)
	}

	// --file - merges stdin, KEY=VALUE on top; null deletes.
	stdout, _, err := run(t, `{"log":{"level":"info"},"tags":null}`, "shadow", "set", "pump-7", "--file", "-", "log.level=debug", "site=null", "--if-match", "1")
	if err != nil {
		t.Fatalf("set --file -: %v\n%s", err, stdout)
	}
	desired, v = desiredOf(t, "pump-7")
	want = `{"log":{"level":"debug"},"report":{"deadband":0.50},"sources":{"temperature":{"enabled":true,"interval":"200ms"}}}`
	if desired != want || v != 2 {
		t.Errorf("after --file: desired = %s (version %d), want %s (version 2)", desired, v, want)
	}

	// A file on disk, -o json, and a named shadow.
	file := filepath.Join(t.TempDir(), "desired.json")
	os.WriteFile(file, []byte(`{"mode":"eco"}`), 0o600)
	out = mustRun(t, "shadow", "set", "pump-7", "--file", file, "--name", "config", "-o", "json")
	if !json.Valid([]byte(out)) || !strings.Contains(out, `"mode": "eco"`) {
		t.Errorf("set -o json printed %s", out)
	}
	if desired, v := desiredOf(t, "pump-7", "--name", "config"); desired != `{"mode":"eco"}` || v != 1 {
		t.Errorf("named shadow desired = %s version %d", desired, v)
	}

	// A stale --if-match is refused and changes nothing.
	_, _, err = run(t, "", "shadow", "set", "pump-7", "x=1", "--if-match", "1")
	if err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("stale --if-match: err = %v, want a conflict", err)
	}
	if _, v := desiredOf(t, "pump-7"); v != 2 {
		t.Errorf("version after refused set = %d, want 2", v)
	}

	get := mustRun(t, "shadow", "get", "pump-7")
	if !strings.HasPrefix(get, "Shadow of pump-7, version 2, last changed ") || !strings.Contains(get, "log.level") {
		t.Errorf("shadow get:\n%s", get)
	}
}

func TestShadowCommandErrors(t *testing.T) {
	startRealHub(t)
	mustRun(t, "devices", "add", "pump-7")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no shadow yet", []string{"shadow", "get", "pump-7"}, "No shadow exists with name: 'pump-7' (not_found)"},
		{"unknown device", []string{"shadow", "set", "ghost", "a=1"}, "not_found"},
		{"nothing to set", []string{"shadow", "set", "pump-7"}, "nothing to set"},
		{"not key=value", []string{"shadow", "set", "pump-7", "interval"}, "want KEY=VALUE"},
		{"empty key part", []string{"shadow", "set", "pump-7", "a..b=1"}, "empty part"},
		{"bad if-match", []string{"shadow", "set", "pump-7", "a=1", "--if-match", "x"}, "--if-match"},
		{"file not an object", []string{"shadow", "set", "pump-7", "--file", "-"}, "want a JSON object"},
		{"too deep for the hub", []string{"shadow", "set", "pump-7", "a.b.c.d.e.f.g=1"}, "maximum is 6"},
		{"bad shadow name", []string{"shadow", "get", "pump-7", "--name", "a b"}, "shadow name"},
		{"interval too short", []string{"shadow", "watch", "pump-7", "--interval", "1ms"}, "at least 100ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, "[1]", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestShadowHelpHasExamples(t *testing.T) {
	cleanEnv(t)
	for _, sub := range []string{"get", "set", "watch"} {
		out := mustRun(t, "shadow", sub, "--help")
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "outpost shadow "+sub+" pump-7") {
			t.Errorf("shadow %s --help lacks examples:\n%s", sub, out)
		}
	}
}

func TestApplyAssignments(t *testing.T) {
	tests := []struct {
		name  string
		base  string
		args  []string
		want  string
		error string
	}{
		{"nested keys", ``, []string{"a.b.c=1", "a.b.d=x", "e=true"}, `{"a":{"b":{"c":1,"d":"x"}},"e":true}`, ""},
		{"JSON values", ``, []string{`s="42"`, "n=-1.5e3", "z=null", `o={"k":[1]}`, "f=false"}, `{"f":false,"n":-1.5e3,"o":{"k":[1]},"s":"42","z":null}`, ""},
		{"strings", ``, []string{"i=200ms", "u=http://x/?a=b", "sp=two words", "empty=", `half="x`}, `{"empty":"","half":"\"x","i":"200ms","sp":"two words","u":"http://x/?a=b"}`, ""},
		{"merges into a file", `{"a":{"x":1},"b":2}`, []string{"a.y=2", "b=3"}, `{"a":{"x":1,"y":2},"b":3}`, ""},
		{"scalar in the way", `{"a":1}`, []string{"a.b=2"}, ``, "a is already set to 1"},
		{"set twice", ``, []string{"a=1", "a=2"}, ``, "given twice"},
		{"empty key", ``, []string{"=1"}, ``, "empty part"},
		{"trailing dot", ``, []string{"a.=1"}, ``, "empty part"},
		{"no equals sign", ``, []string{"a"}, ``, "want KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var base map[string]any
			if tc.base != "" {
				var err error
				if base, err = readDesiredFile(strings.NewReader(tc.base), "-"); err != nil {
					t.Fatal(err)
				}
			}
			got, err := applyAssignments(base, tc.args)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := compactJSON(got); s != tc.want {
				t.Errorf("fragment = %s, want %s", s, tc.want)
			}
		})
	}
}

func TestPrintShadow(t *testing.T) {
	d, err := decodeShadow([]byte(`{"state":{
		"desired":{"log":{"level":"debug"},"sources":{"t":{"interval":"200ms","on":true}}},
		"reported":{"sources":{"t":{"interval":"1s","on":true}},"uptime":5,"err":"bad\ttab"},
		"delta":{"log":{"level":"debug"},"sources":{"t":{"interval":"200ms"}}}},
		"metadata":{"desired":{"log":{"level":{"timestamp":1000}}},"reported":{"uptime":{"timestamp":1060}}},
		"version":3,"timestamp":1070}`))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	g := &globals{stdout: &out, now: func() time.Time { return time.Unix(1070, 0) }}
	if err := g.printShadow("Shadow of pump-7, version 3", d); err != nil {
		t.Fatal(err)
	}
	want := `Shadow of pump-7, version 3, last changed 10s ago
KEY                  DESIRED   REPORTED     STATUS
err                  -         "bad\ttab"   reported only
log.level            "debug"   -            pending
sources.t.interval   "200ms"   "1s"         pending
sources.t.on         true      true         in sync
uptime               -         5            reported only
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestShadowWatch(t *testing.T) {
	startRealHub(t)
	mustRun(t, "devices", "add", "pump-7")
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			var stdout, stderr syncBuffer
			root := NewRoot(&stdout, &stderr)
			root.SetArgs([]string{"shadow", "watch", "pump-7", "--interval", "100ms", "--name", format, "-o", format})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("watch returned %v after interrupt", err)
				}
			}()

			waitFor := func(want string) {
				t.Helper()
				testutil.Eventually(t, 10*time.Second, func() error {
					if !strings.Contains(stdout.String(), want) {
						return fmt.Errorf("watch output so far:\n%s", stdout.String())
					}
					return nil
				})
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				// -o json keeps stdout for documents and says this on stderr.
				if !strings.Contains(stdout.String()+stderr.String(), "pump-7 (shadow "+format+") has no shadow (yet); waiting") {
					return errors.New("watch has not said that there is no shadow yet")
				}
				return nil
			})
			mustRun(t, "shadow", "set", "pump-7", "--name", format, "a=1")
			if format == "table" {
				waitFor("version 1\n  desired:  {\"a\":1}\n  reported: -\n  delta:    {\"a\":1}\n")
			} else {
				waitFor(`"version":1`)
			}
			mustRun(t, "shadow", "set", "pump-7", "--name", format, "b=x")
			if format == "table" {
				waitFor("version 2")
			} else {
				waitFor(`"version":2`)
			}
			if format == "json" {
				lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
				for _, l := range lines {
					if !json.Valid([]byte(l)) {
						t.Errorf("watch -o json printed a line that is not JSON: %q", l)
					}
				}
				if len(lines) != 2 {
					t.Errorf("watch -o json printed %d lines, want one per version:\n%s", len(lines), stdout.String())
				}
			}
			if strings.Count(stdout.String(), "version 1") > 1 {
				t.Errorf("version 1 printed more than once:\n%s", stdout.String())
			}
		})
	}
}

// TestShadowWatchStopsOnAuthError: a refusal that will not go away by
// itself ends the watch instead of polling forever.
func TestShadowWatchStopsOnAuthError(t *testing.T) {
	url := startRealHub(t)
	mustRun(t, "devices", "add", "pump-7")
	_, _, err := run(t, "", "--hub", url, "--token", "garbage", "shadow", "watch", "pump-7")
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("watch with a bad token: %v, want a 401", err)
	}
}
