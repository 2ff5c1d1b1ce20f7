package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// deviceAuth adds a device's HTTP Basic credentials to every request.
type deviceAuth struct{ id, pw string }

func (d deviceAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(d.id, d.pw)
	return (&http.Transport{DisableKeepAlives: true}).RoundTrip(r)
}

func TestKeysAndArtifactsWithRealHub(t *testing.T) {
	h := startRealHubFull(t)
	pw := h.AddDevice(t, "pump-7")
	dir := t.TempDir()
	rootKey := filepath.Join(dir, "outpost-root.key")

	out, _, err := run(t, "", "artifacts", "publish", writeTemp(t, dir, "x"), "--name", "app", "--version", "1.0.0", "--type", "file", "--platform", "any")
	if err == nil || !strings.Contains(err.Error(), `run "outpost keys init" first`) {
		t.Errorf("publish before keys init: err %v, out %q", err, out)
	}
	out = mustRun(t, "keys", "show")
	if !strings.Contains(out, "not initialised") {
		t.Errorf("keys show before init:\n%s", out)
	}

	out = mustRun(t, "keys", "init", "--root-key", rootKey, "--expires", "30d")
	for _, want := range []string{"Initialised TUF keys", rootKey, "OFFLINE", "targets key", "snapshot key", "timestamp key"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys init output lacks %q:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(rootKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, _, err := run(t, "", "keys", "init", "--root-key", rootKey); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("keys init over an existing key file: %v", err)
	}
	if _, _, err := run(t, "", "keys", "init", "--root-key", filepath.Join(dir, "other.key")); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("second keys init: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.key")); err == nil {
		t.Error("a refused keys init left a key file behind")
	}

	blob := bytes.Repeat([]byte("agent-binary"), 500)
	file := writeTemp(t, dir, string(blob))
	out = mustRun(t, "artifacts", "publish", file, "--name", "outpost-agent", "--version", "1.4.0", "--type", "agent", "--platform", "linux/arm64")
	if !strings.Contains(out, "Published outpost-agent/1.4.0/linux-arm64") {
		t.Errorf("publish printed:\n%s", out)
	}
	out = mustRun(t, "artifacts", "publish", file, "--name", "outpost-agent", "--version", "1.4.0", "--type", "agent", "--platform", "linux/arm64")
	if !strings.Contains(out, "already published with the same content") {
		t.Errorf("identical republish printed:\n%s", out)
	}
	if _, _, err := run(t, "", "artifacts", "publish", writeTemp(t, dir, "other"), "--name", "outpost-agent", "--version", "1.4.0", "--type", "agent", "--platform", "linux/arm64"); err == nil || !strings.Contains(err.Error(), "publish a new version") {
		t.Errorf("conflicting republish: %v", err)
	}
	mustRun(t, "artifacts", "publish", writeTemp(t, dir, "cfg"), "--name", "pump-config", "--version", "2.0.0-rc.1", "--type", "file", "--platform", "any")

	out = mustRun(t, "artifacts", "ls")
	for _, want := range []string{"NAME", "SHA256", "outpost-agent", "1.4.0", "linux-arm64", "6000", "pump-config", "2.0.0-rc.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("artifacts ls lacks %q:\n%s", want, out)
		}
	}
	var list struct {
		Artifacts []artifact `json:"artifacts"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "artifacts", "ls", "--name", "pump-config", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Artifacts) != 1 || list.Artifacts[0].Type != "file" || list.Artifacts[0].PublishedAt.IsZero() || len(list.Artifacts[0].SHA256) != 64 {
		t.Errorf("artifacts ls --name pump-config -o json: %+v", list.Artifacts)
	}

	before := status(t)
	out = mustRun(t, "keys", "rotate", "--role", "targets", "--root-key", rootKey)
	if !strings.Contains(out, "Rotated the targets key") || !strings.Contains(out, "Root version 2") {
		t.Errorf("rotate targets printed:\n%s", out)
	}
	after := status(t)
	if after.Roles["targets"].KeyIDs[0] == before.Roles["targets"].KeyIDs[0] || after.Roles["root"].Version != 2 {
		t.Errorf("after rotating targets: %+v", after.Roles)
	}

	newRootKey := filepath.Join(dir, "outpost-root-2.key")
	out = mustRun(t, "keys", "rotate", "--role", "root", "--root-key", rootKey)
	if !strings.Contains(out, newRootKey) || !strings.Contains(out, "Root version 3") {
		t.Errorf("rotate root printed:\n%s", out)
	}
	if _, _, err := run(t, "", "keys", "rotate", "--role", "snapshot", "--root-key", rootKey); err == nil || !strings.Contains(err.Error(), "does not list") {
		t.Errorf("rotate with the retired root key: %v", err)
	}
	mustRun(t, "keys", "rotate", "--role", "timestamp", "--root-key", newRootKey)
	out = mustRun(t, "keys", "show")
	for _, want := range []string{"ROLE", "root", "targets", "snapshot", "timestamp", "offline", "hub (online)", "2 artifact(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys show lacks %q:\n%s", want, out)
		}
	}
	if st := status(t); st.Roles["root"].Version != 4 || st.Roles["root"].Expires.Sub(time.Now()) < 300*24*time.Hour {
		t.Errorf("root after rotations: %+v", st.Roles["root"])
	}

	// A device trusting only root v1 follows the chain the CLI signed and
	// verifies the artifact.
	v1, err := os.ReadFile(filepath.Join(h.DataDir, "ota", "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(h.HTTPURL()+"/tuf/metadata", v1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = h.HTTPURL() + "/tuf/targets"
	cfg.DisableLocalCache = true
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(&http.Client{Transport: deviceAuth{"pump-7", pw}, Timeout: 10 * time.Second})
	cfg.Fetcher = f
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("Refresh from root v1: %v", err)
	}
	tf, err := up.GetTargetInfo("outpost-agent/1.4.0/linux-arm64")
	if err != nil {
		t.Fatal(err)
	}
	if _, data, err := up.DownloadTarget(tf, "", ""); err != nil || !bytes.Equal(data, blob) {
		t.Errorf("DownloadTarget: %v (%d bytes)", err, len(data))
	}
}

func status(t *testing.T) tufStatus {
	t.Helper()
	var st tufStatus
	if err := json.Unmarshal([]byte(mustRun(t, "keys", "show", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func writeTemp(t *testing.T, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "artifact-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestArtifactsPublishUsageErrors(t *testing.T) {
	cleanEnv(t)
	file := writeTemp(t, t.TempDir(), "x")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"artifacts", "publish", file, "--name", "app", "--version", "1.0", "--type", "file", "--platform", "any"}, `version "1.0"`},
		{[]string{"artifacts", "publish", file, "--name", "App", "--version", "1.0.0", "--type", "file", "--platform", "any"}, `name "App"`},
		{[]string{"artifacts", "publish", file, "--name", "app", "--version", "1.0.0", "--type", "blob", "--platform", "any"}, `type "blob"`},
		{[]string{"artifacts", "publish", file, "--name", "app", "--version", "1.0.0", "--type", "file"}, `"platform" not set`},
		{[]string{"artifacts", "publish", "/nonexistent/x", "--name", "app", "--version", "1.0.0", "--type", "file", "--platform", "any"}, "no such file"},
		{[]string{"keys", "rotate", "--role", "admin"}, `--role "admin"`},
		{[]string{"keys", "rotate", "--role", "targets", "--root-key", "/nonexistent/root.key"}, "does not exist"},
		{[]string{"keys", "init", "--expires", "soon"}, "--expires"},
	} {
		_, _, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("outpost %s: error %v, want it to mention %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestKeysAndArtifactsHelpHaveExamples(t *testing.T) {
	cleanEnv(t)
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, name := range [][]string{{"keys"}, {"keys", "init"}, {"keys", "rotate"}, {"keys", "show"},
		{"artifacts"}, {"artifacts", "publish"}, {"artifacts", "ls"}} {
		c, _, err := root.Find(name)
		if err != nil {
			t.Fatalf("%v: %v", name, err)
		}
		if c.Short == "" || c.Example == "" || !strings.Contains(c.Example, "outpost "+strings.Join(name, " ")) {
			t.Errorf("%v: Short or Example missing", name)
		}
	}
}

func TestNextKeyFileAndLifetime(t *testing.T) {
	for in, want := range map[string]string{
		"outpost-root.key":         "outpost-root-2.key",
		"/keys/outpost-root-2.key": "/keys/outpost-root-3.key",
		"root":                     "root-2",
	} {
		if got := nextKeyFile(in); got != want {
			t.Errorf("nextKeyFile(%q) = %q, want %q", in, got, want)
		}
	}
	if d, err := parseLifetime("365d"); err != nil || d != 365*24*time.Hour {
		t.Errorf("parseLifetime(365d) = %v, %v", d, err)
	}
	if d, err := parseLifetime("48h"); err != nil || d != 48*time.Hour {
		t.Errorf("parseLifetime(48h) = %v, %v", d, err)
	}
	for _, bad := range []string{"", "1h", "0d", "-5d", "5000d", "xd"} {
		if _, err := parseLifetime(bad); err == nil {
			t.Errorf("parseLifetime(%q) succeeded", bad)
		}
	}
}
