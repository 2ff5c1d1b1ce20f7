package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// bin holds the binaries TestMain builds.
var bin struct{ outpost, agent string }

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "outpost-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.outpost, bin.agent = filepath.Join(dir, "outpost"), filepath.Join(dir, "outpost-agent")
	for out, pkg := range map[string]string{bin.outpost: "./cmd/outpost", bin.agent: "./cmd/outpost-agent"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, b)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose output is collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", filepath.Base(name), strings.Join(args, " "), p.output())
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM; output:\n%s", p.cmd.Path, err, p.output())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", p.cmd.Path)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// run executes a binary to completion and returns stdout; it fails the test
// unless the exit status matches wantOK.
func run(t *testing.T, env []string, stdin string, wantOK bool, name string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err == nil) != wantOK {
		t.Fatalf("%s %s: err=%v, want success=%v\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), err, wantOK, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// hubProc is a running `outpost hub` and the CLI environment to talk to it.
type hubProc struct {
	*proc
	url, mqtt, data string
	env             []string
}

var hubLine = regexp.MustCompile(`Outpost hub: API (http://\S+), MQTT mqtt://(\S+),`)

func startHub(t *testing.T) *hubProc {
	t.Helper()
	data := filepath.Join(t.TempDir(), "hub-data")
	p := start(t, nil, bin.outpost, "hub", "--data", data, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--grpc", "127.0.0.1:0")
	h := &hubProc{proc: p, data: data}
	testutil.Eventually(t, 30*time.Second, func() error {
		m := hubLine.FindStringSubmatch(p.output())
		if m == nil {
			select {
			case err := <-p.done:
				t.Fatalf("hub exited early (%v):\n%s", err, p.output())
			default:
			}
			return errors.New("hub has not printed its addresses yet")
		}
		h.url, h.mqtt = m[1], m[2]
		return nil
	})
	h.env = []string{"OUTPOST_CONFIG_DIR=" + t.TempDir(), "OUTPOST_HUB=", "OUTPOST_TOKEN="}
	pw, err := os.ReadFile(filepath.Join(data, "admin-password"))
	if err != nil {
		t.Fatalf("generated admin password: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(data, "admin-password")); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-password mode %v, want 0600", fi.Mode().Perm())
	}
	out, _ := run(t, h.env, string(pw), true, bin.outpost, "login", "--hub", h.url, "--user", "admin", "--password-stdin")
	if !strings.Contains(out, "Logged in") {
		t.Fatalf("login printed %q", out)
	}
	return h
}

func (h *hubProc) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := run(t, h.env, "", true, bin.outpost, args...)
	return out
}

func (h *hubProc) addDevice(t *testing.T, id string, labels ...string) (token, joinCmd string) {
	t.Helper()
	args := []string{"devices", "add", id, "-o", "json"}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	var resp struct {
		JoinToken   string `json:"join_token"`
		JoinCommand string `json:"join_command"`
	}
	if err := json.Unmarshal([]byte(h.cli(t, args...)), &resp); err != nil {
		t.Fatalf("devices add output: %v", err)
	}
	return resp.JoinToken, resp.JoinCommand
}

type telemetryPoint struct {
	Seq    uint64 `json:"seq"`
	Sensor string `json:"sensor"`
	Value  any    `json:"value"`
}

func (h *hubProc) points(t *testing.T, id string, args ...string) []telemetryPoint {
	t.Helper()
	var resp struct{ Points []telemetryPoint }
	out := h.cli(t, append([]string{"telemetry", "query", id, "--since", "5m", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("telemetry query output %q: %v", out, err)
	}
	return resp.Points
}

type deviceInfo struct {
	ID     string            `json:"id"`
	Online bool              `json:"online"`
	Labels map[string]string `json:"labels"`
}

func (h *hubProc) device(t *testing.T, id string) deviceInfo {
	t.Helper()
	var d deviceInfo
	if err := json.Unmarshal([]byte(h.cli(t, "devices", "show", id, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestWalkthrough follows the README: hub, login, add device, join, run
// the agent, see the device online and its points through the CLI.
func TestWalkthrough(t *testing.T) {
	h := startHub(t)
	token, joinCmd := h.addDevice(t, "pump-7", "site=plant-1")
	if !strings.Contains(joinCmd, token) || !strings.Contains(joinCmd, h.url) {
		t.Errorf("join command %q lacks the token or hub URL %s", joinCmd, h.url)
	}
	agentDir := filepath.Join(t.TempDir(), "pump-7")
	run(t, nil, "", true, bin.agent, "join", "--hub", h.url, "--token", token, "--data", agentDir)
	fi, err := os.Stat(filepath.Join(agentDir, "agent.yaml"))
	if err != nil {
		t.Fatalf("join wrote no agent.yaml: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("agent.yaml mode %v, want 0600 (it holds the device secret)", fi.Mode().Perm())
	}
	// The token is one-time.
	_, stderr := run(t, nil, "", false, bin.agent, "join", "--hub", h.url, "--token", token, "--data", filepath.Join(t.TempDir(), "again"))
	if !strings.Contains(stderr, "already used") {
		t.Errorf("second join: stderr %q does not say the token was already used", stderr)
	}

	agent := start(t, nil, bin.agent, "run", "--data", agentDir)
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := len(h.points(t, "pump-7")); n < 6 {
			return fmt.Errorf("%d points stored so far", n)
		}
		return nil
	})
	if d := h.device(t, "pump-7"); !d.Online || d.Labels["site"] != "plant-1" {
		t.Errorf("device while agent runs: %+v", d)
	}
	ls := h.cli(t, "devices", "ls")
	if !regexp.MustCompile(`pump-7\s+(yes|true|online)`).MatchString(ls) {
		t.Errorf("devices ls does not show pump-7 online:\n%s", ls)
	}
	pts := h.points(t, "pump-7")
	sensors := map[string]bool{}
	seqs := map[uint64]bool{}
	for _, p := range pts {
		sensors[p.Sensor] = true
		if seqs[p.Seq] {
			t.Errorf("seq %d stored twice", p.Seq)
		}
		seqs[p.Seq] = true
	}
	for _, s := range []string{"temperature", "humidity", "vibration"} {
		if !sensors[s] {
			t.Errorf("no %s points among %d", s, len(pts))
		}
	}
	if only := h.points(t, "pump-7", "--sensor", "temperature"); len(only) == 0 || only[0].Sensor != "temperature" {
		t.Errorf("--sensor temperature returned %+v", only)
	}
	table := h.cli(t, "telemetry", "query", "pump-7", "--since", "5m", "--limit", "2")
	if !strings.Contains(table, "SENSOR") || len(strings.Split(strings.TrimSpace(table), "\n")) != 3 {
		t.Errorf("table output with --limit 2:\n%s", table)
	}

	agent.stop(t)
	testutil.Eventually(t, 10*time.Second, func() error {
		if h.device(t, "pump-7").Online {
			return errors.New("device still online after the agent stopped")
		}
		return nil
	})
	// Restarting the agent continues the sequence: nothing it sends is
	// mistaken for a redelivery.
	before := len(h.points(t, "pump-7", "--limit", "10000"))
	agent = start(t, nil, bin.agent, "run", "--data", agentDir)
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := len(h.points(t, "pump-7", "--limit", "10000")); n < before+3 {
			return fmt.Errorf("%d points after restart, had %d", n, before)
		}
		return nil
	})
	agent.stop(t)
	h.proc.stop(t)
}

func TestCLIErrors(t *testing.T) {
	h := startHub(t)
	_, stderr := run(t, h.env, "", false, bin.outpost, "devices", "show", "nope")
	if !strings.Contains(stderr, "not found") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("unknown device: stderr %q, want one line saying not found", stderr)
	}
	_, stderr = run(t, append(h.env, "OUTPOST_TOKEN=garbage"), "", false, bin.outpost, "devices", "ls")
	if !strings.Contains(stderr, "login") {
		t.Errorf("bad token: stderr %q should point to login", stderr)
	}
	_, stderr = run(t, h.env, "", false, bin.outpost, "devices", "add", "bad id!")
	if !strings.Contains(stderr, "device id") {
		t.Errorf("bad id: stderr %q", stderr)
	}
	_, stderr = run(t, h.env, "wrong-password\n", false, bin.outpost, "login", "--hub", h.url, "--user", "admin", "--password-stdin")
	if !strings.Contains(stderr, "wrong user name or password") {
		t.Errorf("wrong password: stderr %q", stderr)
	}
	_, stderr = run(t, nil, "", false, bin.agent, "join", "--hub", h.url, "--token", "ojt_unknown", "--data", t.TempDir()+"/x")
	if !strings.Contains(stderr, "unknown") {
		t.Errorf("unknown join token: stderr %q", stderr)
	}
	h.proc.stop(t)
}

// needTool finds an outside program; missing, it fails the test under CI
// (where .ci/run installs it) and skips it elsewhere.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (apt-get install %s); CI must have it", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

// joinHTTP redeems a join token over the REST API, as a third-party device
// would, and returns its MQTT password.
func (h *hubProc) joinHTTP(t *testing.T, token string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	resp, err := http.Post(h.url+"/api/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cred struct {
		MQTTPassword string `json:"mqtt_password"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cred); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("join: status %d, %v", resp.StatusCode, err)
	}
	return cred.MQTTPassword
}

// TestMosquittoPub: a third-party MQTT client with a device's credentials
// publishes JSON telemetry that lands; wrong credentials are refused.
func TestMosquittoPub(t *testing.T) {
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	h := startHub(t)
	token, _ := h.addDevice(t, "sensor-3p")
	password := h.joinHTTP(t, token)
	host, port, _ := strings.Cut(h.mqtt, ":")
	payload := `{"seq_first":1,"points":[{"sensor":"temperature","ts":"` + time.Now().UTC().Format(time.RFC3339) + `","value":21.5},{"sensor":"door/open","ts":` + fmt.Sprint(time.Now().UnixMilli()) + `,"value":true}]}`
	args := func(user, pass string) []string {
		return []string{"-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", user, "-u", user, "-P", pass,
			"-t", "outpost/v1/devices/sensor-3p/telemetry", "-D", "publish", "content-type", "application/json", "-m", payload}
	}
	run(t, nil, "", true, pub, args("sensor-3p", password)...)
	// The same message again (a redelivery) is stored once.
	run(t, nil, "", true, pub, args("sensor-3p", password)...)
	pts := h.points(t, "sensor-3p")
	if len(pts) != 2 || pts[0].Value != 21.5 && pts[1].Value != 21.5 {
		t.Fatalf("stored %+v, want the 2 published points once", pts)
	}
	values := map[string]any{}
	for _, p := range pts {
		values[p.Sensor] = p.Value
	}
	if values["temperature"] != 21.5 || values["door/open"] != true {
		t.Errorf("stored values %v", values)
	}

	_, stderr := run(t, nil, "", false, pub, args("sensor-3p", password+"x")...)
	if !strings.Contains(strings.ToLower(stderr), "not authorized") && !strings.Contains(strings.ToLower(stderr), "bad user name or password") {
		t.Errorf("wrong password: mosquitto_pub said %q", stderr)
	}
	_, _ = run(t, nil, "", false, pub, args("someone-else", password)...)
	if n := len(h.points(t, "sensor-3p")); n != 2 {
		t.Errorf("%d points after refused publishes, want 2", n)
	}
	h.proc.stop(t)
}
