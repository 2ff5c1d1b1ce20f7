package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// cleanEnv isolates a test from the user's login and environment and
// returns the config dir.
func cleanEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(envConfigDir, dir)
	t.Setenv(envHub, "")
	t.Setenv(envToken, "")
	return dir
}

// run executes the outpost root command with args and stdin.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot(&out, &errb)
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// mustRun is run that fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := run(t, "", args...)
	if err != nil {
		t.Fatalf("outpost %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// login logs in to h via the CLI, saving the login.
func login(t *testing.T, h *fakeHub) {
	t.Helper()
	if _, _, err := run(t, h.password+"\n", "login", "--hub", h.URL(), "--user", "admin", "--password-stdin"); err != nil {
		t.Fatalf("login: %v", err)
	}
}

func TestLoginSavesTokenPrivately(t *testing.T) {
	dir := cleanEnv(t)
	h := newFakeHub(t)

	out, _, err := run(t, h.password+"\r\n", "login", "--hub", h.URL()+"/", "--user", "admin", "--password-stdin")
	if err != nil {
		t.Fatal(err)
	}
	want := "Logged in to " + h.URL() + " as admin (token expires " + h.expires.Format(time.RFC3339) + ")\n"
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	p := filepath.Join(dir, "login.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("login.json mode = %v, want 0600", fi.Mode().Perm())
	}
	var s savedLogin
	data, _ := os.ReadFile(p)
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if s.Hub != h.URL() || s.Token != h.token || !s.ExpiresAt.Equal(h.expires) || s.User != "admin" {
		t.Errorf("saved login = %+v", s)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("config dir has %d entries, want only login.json (no temporary files left)", len(entries))
	}

	// Later commands use the saved hub and token without flags.
	h.addDevice(&fakeDevice{ID: "pump-7"})
	out = mustRun(t, "devices", "ls")
	if !strings.Contains(out, "pump-7") {
		t.Errorf("devices ls after login:\n%s", out)
	}
	if auth, _, _ := h.last(); auth != "Bearer "+h.token {
		t.Errorf("Authorization = %q", auth)
	}
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"wrong password", "nope\n", []string{"--password-stdin"}, "wrong user or password (unauthorized)"},
		{"empty password", "\n", []string{"--password-stdin"}, "empty password"},
		{"no password-stdin", "", nil, "--password-stdin"},
		{"bad hub", "x\n", []string{"--password-stdin", "--hub", "ftp://example.com"}, "scheme must be http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := cleanEnv(t)
			h := newFakeHub(t)
			args := append([]string{"login", "--hub", h.URL()}, tt.args...)
			_, _, err := run(t, tt.stdin, args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "login.json")); !os.IsNotExist(err) {
				t.Errorf("login.json written after failed login (stat err %v)", err)
			}
		})
	}
}

// TestTargetPrecedence checks flag > env > saved login for hub and token,
// and that a saved token is never sent to another hub.
func TestTargetPrecedence(t *testing.T) {
	hubs := map[string]*fakeHub{"file": nil, "env": nil, "flag": nil}
	tests := []struct {
		name      string
		envHub    bool
		envToken  bool
		flagHub   bool
		flagToken bool
		wantHub   string
		wantToken string // "" means the command fails with "not logged in"
	}{
		{name: "saved login only", wantHub: "file", wantToken: "file"},
		{name: "env overrides saved", envHub: true, envToken: true, wantHub: "env", wantToken: "env"},
		{name: "flags override env", envHub: true, envToken: true, flagHub: true, flagToken: true, wantHub: "flag", wantToken: "flag"},
		{name: "env token with saved hub", envToken: true, wantHub: "file", wantToken: "env"},
		{name: "flag hub keeps env token", envHub: true, envToken: true, flagHub: true, wantHub: "flag", wantToken: "env"},
		{name: "saved token not sent to other hub", envHub: true, wantHub: "env", wantToken: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for n := range hubs {
				hubs[n] = newFakeHub(t)
				hubs[n].token = "tok-" + n
				hubs[n].addDevice(&fakeDevice{ID: "dev-" + n})
			}
			if _, err := saveLogin(&savedLogin{Hub: hubs["file"].URL(), Token: "tok-file", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			var args []string
			if tt.envHub {
				t.Setenv(envHub, hubs["env"].URL())
			}
			if tt.envToken {
				t.Setenv(envToken, "tok-env")
			}
			if tt.flagHub {
				args = append(args, "--hub", hubs["flag"].URL())
			}
			if tt.flagToken {
				args = append(args, "--token", "tok-flag")
			}
			// Make the chosen hub accept the token we expect to be sent.
			if tt.wantToken != "" {
				hubs[tt.wantHub].token = "tok-" + tt.wantToken
			}
			out, _, err := run(t, "", append(args, "devices", "ls")...)
			if tt.wantToken == "" {
				if err == nil || !strings.Contains(err.Error(), "not logged in to "+hubs[tt.wantHub].URL()) {
					t.Fatalf("err = %v, want not logged in to the %s hub", err, tt.wantHub)
				}
				for n, h := range hubs {
					if auth, _, _ := h.last(); auth != "" {
						t.Errorf("%s hub got Authorization %q", n, auth)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "dev-"+tt.wantHub) {
				t.Errorf("talked to the wrong hub, want %s:\n%s", tt.wantHub, out)
			}
			if auth, _, _ := hubs[tt.wantHub].last(); auth != "Bearer tok-"+tt.wantToken {
				t.Errorf("Authorization = %q, want token tok-%s", auth, tt.wantToken)
			}
		})
	}
}

func TestDefaultHubWithoutLogin(t *testing.T) {
	cleanEnv(t)
	_, _, err := run(t, "", "devices", "ls")
	if err == nil || !strings.Contains(err.Error(), `not logged in to http://127.0.0.1:8080: run "outpost login`) {
		t.Fatalf("err = %v", err)
	}
}

func TestExpiredSavedLogin(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	if _, err := saveLogin(&savedLogin{Hub: h.URL(), Token: h.token, ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "", "devices", "ls")
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), `run "outpost login"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDevicesAdd(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	login(t, h)

	out := mustRun(t, "devices", "add", "pump-7", "--label", "site=plant-1", "-l", "line=3")
	for _, want := range []string{
		"Added device pump-7.",
		"ojt_pump-7_1",
		"expires 2030-01-02T03:04:05Z",
		"outpost-agent join --hub " + h.URL() + " --token ojt_pump-7_1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "devices", "show", "pump-7", "-o", "json")
	var d fakeDevice
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Labels["site"] != "plant-1" || d.Labels["line"] != "3" {
		t.Errorf("labels = %v", d.Labels)
	}

	out = mustRun(t, "devices", "add", "pump-8", "-o", "json")
	var resp map[string]any
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("-o json output is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"device", "join_token", "join_token_expires_at", "join_command"} {
		if _, ok := resp[k]; !ok {
			t.Errorf("-o json lacks %q: %s", k, out)
		}
	}
	if resp["join_command"] != "outpost-agent join --hub "+h.URL()+" --token ojt_pump-8_2" {
		t.Errorf("join_command = %v", resp["join_command"])
	}

	_, _, err := run(t, "", "devices", "add", "pump-7")
	if err == nil || !strings.Contains(err.Error(), `device "pump-7" exists already (conflict)`) {
		t.Errorf("duplicate add: err = %v", err)
	}
}

func TestDevicesToken(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	login(t, h)
	h.addDevice(&fakeDevice{ID: "pump-7"})

	out := mustRun(t, "devices", "token", "pump-7")
	if !strings.Contains(out, "New join token for device pump-7") ||
		!strings.Contains(out, "outpost-agent join --hub "+h.URL()+" --token ojt_pump-7_1") {
		t.Errorf("output:\n%s", out)
	}
	if _, p, _ := h.last(); p != "/api/v1/devices/pump-7/join-token" {
		t.Errorf("path = %s", p)
	}
	out = mustRun(t, "devices", "token", "pump-7", "-o", "json")
	if !strings.Contains(out, `"join_token": "ojt_pump-7_2"`) {
		t.Errorf("json output:\n%s", out)
	}
}

func TestDevicesList(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	login(t, h)
	seen := time.Now().Add(-3 * time.Second)
	h.addDevice(&fakeDevice{ID: "pump-7", Labels: map[string]string{"site": "plant-1", "line": "3"}, Joined: true, Online: true, LastSeen: &seen})
	h.addDevice(&fakeDevice{ID: "fan-1", Labels: map[string]string{"site": "plant-2"}})

	out := mustRun(t, "devices", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", out)
	}
	if !regexp.MustCompile(`^ID\s+ONLINE\s+LAST SEEN\s+LABELS$`).MatchString(lines[0]) {
		t.Errorf("header = %q", lines[0])
	}
	if !regexp.MustCompile(`^fan-1\s+no\s+never\s+site=plant-2$`).MatchString(lines[1]) {
		t.Errorf("row 1 = %q", lines[1])
	}
	if !regexp.MustCompile(`^pump-7\s+yes\s+\d+s ago\s+line=3,site=plant-1$`).MatchString(lines[2]) {
		t.Errorf("row 2 = %q", lines[2])
	}
	// Columns are aligned.
	if strings.Index(lines[0], "ONLINE") != strings.Index(lines[1], "no") {
		t.Errorf("columns not aligned:\n%s", out)
	}

	out = mustRun(t, "devices", "list", "--label", "site=plant-1", "-o", "json")
	if _, _, q := h.last(); strings.Join(q["label"], ",") != "site=plant-1" {
		t.Errorf("label query = %v", q["label"])
	}
	var resp struct {
		Devices []fakeDevice `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(resp.Devices) != 1 || resp.Devices[0].ID != "pump-7" {
		t.Errorf("devices = %+v", resp.Devices)
	}
}

func TestDevicesShowAndRemove(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	login(t, h)
	h.addDevice(&fakeDevice{ID: "pump-7", Labels: map[string]string{"site": "plant-1"}, AgentVersion: "0.1.0", Joined: true})

	out := mustRun(t, "devices", "show", "pump-7")
	for _, re := range []string{`(?m)^ID:\s+pump-7$`, `(?m)^Labels:\s+site=plant-1$`, `(?m)^Joined:\s+yes$`,
		`(?m)^Online:\s+no$`, `(?m)^Last seen:\s+never$`, `(?m)^Agent version:\s+0\.1\.0$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("show output does not match %s:\n%s", re, out)
		}
	}

	if regexp.MustCompile(`(?m)^Spool`).MatchString(out) {
		t.Errorf("show prints spool lines for a device that never reported:\n%s", out)
	}
	h.addDevice(&fakeDevice{ID: "pump-8", Spool: map[string]any{"points": 1200, "bytes": 65536, "dropped": 7,
		"oldest": "2026-11-25T10:00:00Z", "reported_at": "2026-11-25T10:05:00Z"}})
	out = mustRun(t, "devices", "show", "pump-8")
	for _, re := range []string{`(?m)^Spool depth:\s+1200 points, 65536 bytes$`, `(?m)^Spool dropped:\s+7$`,
		`(?m)^Spool backlog:\s+oldest from 2026-11-25T10:00:00Z`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("show output does not match %s:\n%s", re, out)
		}
	}

	out = mustRun(t, "devices", "rm", "pump-7")
	if out != "deleted device pump-7\n" {
		t.Errorf("rm output = %q", out)
	}
	if h.hasDevice("pump-7") {
		t.Error("device still there after rm")
	}
	_, _, err := run(t, "", "devices", "show", "pump-7")
	if err == nil || !strings.Contains(err.Error(), `hub refused: device "pump-7" not found (not_found)`) {
		t.Errorf("show after rm: err = %v", err)
	}
	_, _, err = run(t, "", "devices", "delete", "pump-7", "--yes")
	if err == nil || !strings.Contains(err.Error(), `device "pump-7" not found (not_found)`) {
		t.Errorf("rm of missing device: err = %v", err)
	}

	h.addDevice(&fakeDevice{ID: "a"})
	h.addDevice(&fakeDevice{ID: "b"})
	out = mustRun(t, "devices", "rm", "a", "b", "-o", "json")
	var del []map[string]any
	if err := json.Unmarshal([]byte(out), &del); err != nil || len(del) != 2 {
		t.Errorf("rm -o json = %q (%v)", out, err)
	}
}

func TestTelemetryQuery(t *testing.T) {
	cleanEnv(t)
	h := newFakeHub(t)
	login(t, h)
	h.addDevice(&fakeDevice{ID: "pump-7"})
	h.mu.Lock()
	h.points["pump-7"] = []map[string]any{
		{"seq": 1, "sensor": "temperature", "ts": "2026-11-25T16:00:00.123Z", "value": 21.5},
		{"seq": 2, "sensor": "state", "ts": "2026-11-25T16:00:01Z", "value": "running"},
		{"seq": 3, "sensor": "door", "ts": "2026-11-25T16:00:02Z", "value": true},
	}
	h.mu.Unlock()

	out := mustRun(t, "telemetry", "query", "pump-7", "--sensor", "temperature", "--since", "5m",
		"--until", "2026-11-25T17:00:00Z", "--limit", "50")
	_, p, q := h.last()
	if p != "/api/v1/devices/pump-7/telemetry" {
		t.Errorf("path = %s", p)
	}
	want := map[string]string{"sensor": "temperature", "since": "5m", "until": "2026-11-25T17:00:00Z", "limit": "50"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("query %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if len(q) != len(want) {
		t.Errorf("query = %v", q)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header + 3 rows:\n%s", out)
	}
	for i, re := range []string{
		`^TIME\s+SENSOR\s+SEQ\s+VALUE$`,
		`^2026-11-25T16:00:00\.123Z\s+temperature\s+1\s+21\.5$`,
		`^2026-11-25T16:00:01\.000Z\s+state\s+2\s+running$`,
		`^2026-11-25T16:00:02\.000Z\s+door\s+3\s+true$`,
	} {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}

	// Without flags no query parameters are sent: the hub applies its defaults.
	out = mustRun(t, "telemetry", "query", "pump-7", "-o", "json")
	if _, _, q := h.last(); len(q) != 0 {
		t.Errorf("query without flags = %v", q)
	}
	var resp struct {
		Device string           `json:"device"`
		Points []map[string]any `json:"points"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Device != "pump-7" || len(resp.Points) != 3 {
		t.Errorf("json = %s (%v)", out, err)
	}
}

func TestErrors(t *testing.T) {
	closed := httptest.NewServer(nil)
	deadURL := closed.URL
	closed.Close()

	tests := []struct {
		name string
		args func(h *fakeHub) []string
		want []string
	}{
		{
			name: "401 bad token",
			args: func(h *fakeHub) []string { return []string{"devices", "ls", "--token", "wrong"} },
			want: []string{"hub refused: token is missing or invalid (unauthorized)", `run "outpost login"`},
		},
		{
			name: "404",
			args: func(h *fakeHub) []string { return []string{"devices", "show", "nope"} },
			want: []string{`showing device "nope": hub refused: device "nope" not found (not_found)`},
		},
		{
			name: "404 telemetry",
			args: func(h *fakeHub) []string { return []string{"telemetry", "query", "nope"} },
			want: []string{`device "nope" not found (not_found)`},
		},
		{
			name: "hub unreachable",
			args: func(h *fakeHub) []string { return []string{"devices", "ls", "--hub", deadURL, "--token", "t"} },
			want: []string{"cannot reach hub at " + deadURL + ": "},
		},
		{
			name: "bad output format",
			args: func(h *fakeHub) []string { return []string{"devices", "ls", "-o", "yaml"} },
			want: []string{`unknown output format "yaml": use "table" or "json"`},
		},
		{
			name: "label without =",
			args: func(h *fakeHub) []string { return []string{"devices", "add", "pump-7", "--label", "site"} },
			want: []string{`--label "site": want key=value`},
		},
		{
			name: "label with empty key",
			args: func(h *fakeHub) []string { return []string{"devices", "ls", "--label", "=x"} },
			want: []string{`--label "=x": key is empty`},
		},
		{
			name: "bad since",
			args: func(h *fakeHub) []string { return []string{"telemetry", "query", "pump-7", "--since", "yesterday"} },
			want: []string{`--since: "yesterday": want an RFC 3339 time`},
		},
		{
			name: "limit out of range",
			args: func(h *fakeHub) []string { return []string{"telemetry", "query", "pump-7", "--limit", "0"} },
			want: []string{"--limit 0: want 1 to 10000"},
		},
		{
			name: "missing id",
			args: func(h *fakeHub) []string { return []string{"devices", "show"} },
			want: []string{"accepts 1 arg(s), received 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			h := newFakeHub(t)
			login(t, h)
			out, _, err := run(t, "", tt.args(h)...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestHelpHasExamples(t *testing.T) {
	cleanEnv(t)
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range [][]string{{"login"}, {"devices"}, {"devices", "add"}, {"devices", "ls"},
		{"devices", "show"}, {"devices", "rm"}, {"devices", "token"}, {"telemetry"}, {"telemetry", "query"}} {
		c, _, err := root.Find(name)
		if err != nil {
			t.Fatalf("%v: %v", name, err)
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("%v: Short or Example missing", name)
		}
	}
}
