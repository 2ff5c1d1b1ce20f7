package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outpost-edge/outpost/internal/agent/brokertest"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/slots"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cli runs the command line and returns the exit code and both outputs.
func cli(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, 2, "", "Commands:"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"--help"}, 0, "Commands:", ""},
		{"join help", []string{"join", "-h"}, 0, "outpost-agent join --hub URL --token TOKEN", ""},
		{"run help", []string{"run", "--help"}, 0, "-log-level level", ""},
		{"run help mentions slots", []string{"run", "--help"}, 0, "-no-slots", ""},
		{"version help", []string{"version", "-h"}, 0, "Example:", ""},
		{"version", []string{"version"}, 0, "outpost-agent " + version + " (commit ", ""},
		{"bad flag", []string{"run", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"stray argument", []string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
		{"join without flags", []string{"join"}, 2, "", "missing --hub and --token"},
		{"bad log level", []string{"run", "--log-level", "loud"}, 2, "", "want debug, info, warn or error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OUTPOST_HUB", "")
			t.Setenv("OUTPOST_JOIN_TOKEN", "")
			code, stdout, stderr := cli(context.Background(), tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) || (tt.wantStdout == "" && stdout != "") {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) || (tt.wantStderr == "" && stderr != "") {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	var buf bytes.Buffer
	if code := exitCode(fmt.Errorf("loading: %w", errors.New("boom")), &buf); code != 1 || buf.String() != "outpost-agent: loading: boom\n" {
		t.Errorf("exitCode = %d, printed %q", code, buf.String())
	}
}

// fakeHub accepts each token in tokens once.
func fakeHub(t *testing.T, mqttURL string, tokens ...string) *httptest.Server {
	t.Helper()
	valid := map[string]bool{}
	for _, tk := range tokens {
		valid[tk] = true
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		for tk := range valid {
			if strings.Contains(string(body), `"`+tk+`"`) {
				delete(valid, tk)
				fmt.Fprintf(w, `{"device_id":"pump-7","hub_url":"http://hub","mqtt_url":%q,"mqtt_username":"pump-7","mqtt_password":"pw-%s"}`, mqttURL, tk)
				return
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"unauthorized","message":"join token already used"}}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJoin(t *testing.T) {
	hub := fakeHub(t, "mqtt://127.0.0.1:1883", "ojt_a", "ojt_b")
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, config.FileName)

	code, stdout, stderr := cli(context.Background(), "join", "--hub", hub.URL, "--token", "ojt_a", "--data", dir)
	if code != 0 || !strings.Contains(stdout, `Joined as device "pump-7"`) {
		t.Fatalf("join = %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent.yaml: %v, mode %v; want mode 0600", err, fi.Mode())
	}
	cfg, err := config.Load(path)
	if err != nil || cfg.MQTT.Password != "pw-ojt_a" {
		t.Fatalf("Load = %+v, %v", cfg.MQTT, err)
	}

	// A second join does not silently replace the credentials.
	code, _, stderr = cli(context.Background(), "join", "--hub", hub.URL, "--token", "ojt_b", "--data", dir)
	if code != 1 || !strings.Contains(stderr, "exists already") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("join over an existing config = %d, stderr %q; want exit 1 and one line", code, stderr)
	}
	code, _, stderr = cli(context.Background(), "join", "--hub", hub.URL, "--token", "ojt_b", "--data", dir, "--force")
	if code != 0 {
		t.Fatalf("join --force = %d, stderr %q", code, stderr)
	}
	if cfg, _ := config.Load(path); cfg.MQTT.Password != "pw-ojt_b" {
		t.Errorf("password after --force = %q, want pw-ojt_b", cfg.MQTT.Password)
	}

	// The hub's refusal reaches the user as one clear line.
	code, _, stderr = cli(context.Background(), "join", "--hub", hub.URL, "--token", "ojt_a", "--data", t.TempDir())
	if code != 1 || stderr != "outpost-agent: join refused: join token already used\n" {
		t.Errorf("refused join = %d, stderr %q", code, stderr)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := cli(context.Background(), "run", "--data", dir)
	if code != 1 || !strings.Contains(stderr, "not found; run `outpost-agent join` first") {
		t.Errorf("run without config = %d, stderr %q", code, stderr)
	}
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, []byte("device_id: pump-7\ntelemetry:\n  qos: 9\nhttp:\n  listen: 0.0.0.0:9100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = cli(context.Background(), "run", "--config", path)
	if code != 1 || !strings.Contains(stderr, "telemetry.qos") || !strings.Contains(stderr, "http.listen") {
		t.Errorf("run with a bad config = %d, stderr %q; want both problems", code, stderr)
	}
}

func TestRunPublishesUntilCancelled(t *testing.T) {
	b := brokertest.Start(t, "")
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DeviceID = "pump-7"
	cfg.MQTT.URL = b.URL
	if err := cfg.Save(filepath.Join(dir, config.FileName)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--data", dir}, &stdout, &stderr) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(b.Published(protocol.TelemetryTopic("pump-7"))) == 0 {
			return errors.New("no telemetry yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	if !strings.Contains(stderr.String(), "agent stopped") {
		t.Errorf("logs lack the stop message:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "seq")); err != nil {
		t.Errorf("no seq reservation in the data directory: %v", err)
	}
}

func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	setGCPercent(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Errorf("without GOGC the agent runs at GOGC=%d, want %d", got, agentGCPercent)
	}
	setGCPercent(func(k string) (string, bool) { return "200", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set the agent changed the GC target to %d", got)
	}
}

func TestExitCodeUpdates(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("ota job: %w", slots.ErrRestart), slots.RestartExitCode},
		{slots.ErrWindowExpired, slots.TrialExpiredExitCode},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if code := exitCode(tt.err, &buf); code != tt.want || strings.Count(buf.String(), "\n") != 1 {
			t.Errorf("exitCode(%v) = %d, printed %q; want %d and one line", tt.err, code, buf.String(), tt.want)
		}
	}
}

// trialDir writes a configuration for mqttURL and a state.json with a
// started trial of slot a, and sets the variables the launcher gives a
// trial. The slot binary itself is not needed: this process plays it.
func trialDir(t *testing.T, mqttURL string, window time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DeviceID = "pump-7"
	cfg.MQTT.URL = mqttURL
	if err := cfg.Save(filepath.Join(dir, config.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, slots.DirName), 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	state := fmt.Sprintf(`{"active":"","trial":{"slot":"a","version":"2.0.0","job_id":"job-1","window_ms":%d,"started_at":%q,"deadline":%q,"starts":1},"last_result":null}`,
		window.Milliseconds(), now.Format(time.RFC3339Nano), now.Add(window).Format(time.RFC3339Nano))
	if err := os.WriteFile(filepath.Join(dir, slots.DirName, slots.StateFileName), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(slots.EnvSlot, "a")
	t.Setenv(slots.EnvTrial, "1")
	return dir
}

func TestRunTrialCommitsWhenConnected(t *testing.T) {
	b := brokertest.Start(t, "")
	dir := trialDir(t, b.URL, 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--data", dir}, &stdout, &stderr) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		s, err := slots.Status(dir)
		if err != nil {
			return err
		}
		if s.LastResult == nil {
			return errors.New("not committed yet")
		}
		return nil
	})
	if len(b.Published(protocol.StatusTopic("pump-7"))) == 0 {
		t.Error("committed before the online status was published")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	s, _ := slots.Status(dir)
	if s.Active != "a" || s.ActiveVersion != "2.0.0" || s.LastResult.Outcome != slots.OutcomeCommitted || s.LastResult.JobID != "job-1" {
		t.Errorf("state = %+v, last_result %+v", s, *s.LastResult)
	}
	if _, set := os.LookupEnv(slots.EnvSlot); set {
		t.Error("the launcher variables stayed in the environment for child processes")
	}
	if !strings.Contains(stderr.String(), "update trial committed") {
		t.Errorf("logs lack the commit:\n%s", stderr.String())
	}
}

func TestRunTrialWithoutHubRollsBack(t *testing.T) {
	dir := trialDir(t, "mqtt://127.0.0.1:1", 300*time.Millisecond)
	start := time.Now()
	code, _, stderr := cli(context.Background(), "run", "--data", dir)
	if code != slots.TrialExpiredExitCode {
		t.Fatalf("run = %d, want %d; stderr:\n%s", code, slots.TrialExpiredExitCode, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the trial took %s to give up on a 300ms window", d)
	}
	s, err := slots.Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Trial != nil || s.LastResult == nil || s.LastResult.Outcome != slots.OutcomeRolledBack || s.LastResult.Reason != slots.ReasonWindowExpired {
		t.Errorf("state = %+v", s)
	}
}
