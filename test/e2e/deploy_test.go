package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// deployStatus is what `outpost deploy status NAME -o json` prints, in part.
type deployStatus struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	State    string `json:"state"`
	Message  string `json:"message"`
	Devices  []struct {
		Device   string `json:"device"`
		Revision string `json:"revision"`
		Version  string `json:"version"`
		State    string `json:"state"`
		Healthy  bool   `json:"healthy"`
		Restarts int    `json:"restarts"`
		LastExit *struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
			Error  string `json:"error"`
		} `json:"last_exit"`
		Limits string `json:"limits"`
		Error  string `json:"error"`
	} `json:"devices"`
}

func (h *hubProc) deployStatus(t *testing.T, name string) deployStatus {
	t.Helper()
	var s deployStatus
	if err := json.Unmarshal([]byte(h.cli(t, "deploy", "status", name, "-o", "json")), &s); err != nil {
		t.Fatalf("deploy status: %v", err)
	}
	return s
}

// buildWebsvc builds testdata/websvc as version and publishes it as the
// service artifact websvc@version.
func (h *hubProc) publishWebsvc(t *testing.T, version string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "websvc")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./testdata/websvc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building websvc: %v\n%s", err, b)
	}
	h.cli(t, "artifacts", "publish", out, "--name", "websvc", "--version", version, "--type", "service", "--platform", "any")
}

// writeSpec writes a deployment spec to a file and returns its path.
func writeSpec(t *testing.T, spec string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort returns a TCP port free on 127.0.0.1 now; the tests serve it
// on other loopback addresses too.
func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

// get fetches url and returns the body of a 200 answer.
func get(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	return string(b), nil
}

const webSpec = `name: web
artifact: websvc@%s
args: [--port, "%d"%s]
ports: [%d]
health:
  http: {port: %d, path: /healthz}
  interval: 1s
  timeout: 500ms
  failure_threshold: 2
restart: {backoff_min: 200ms, backoff_max: 2s}
selector: {app: web}
strategy:
  batch: 1
  max_unavailable: 0
  health_timeout: 15s
`

// TestDeployRolling deploys a tiny HTTP service to three agents, reaches it
// on each, then rolls out a version that fails its health check: the
// update stops after the first batch, that device goes back to v1 and the
// others serve v1 throughout.
func TestDeployRolling(t *testing.T) {
	h := startHub(t)
	h.initKeys(t)
	h.publishWebsvc(t, "1.0.0")
	h.publishWebsvc(t, "2.0.0")
	port := freePort(t)
	addrs := map[string]string{}
	apiAddr := freeAddr(t) // web-1's local API for apps
	for i, id := range []string{"web-1", "web-2", "web-3"} {
		addrs[id] = fmt.Sprintf("127.0.0.%d", i+2)
		cfg := map[string]any{"sources": []any{}, "workloads": map[string]any{"address": addrs[id]}, "api": map[string]any{"listen": ""}}
		if id == "web-1" {
			cfg["api"] = map[string]any{"listen": apiAddr}
		}
		h.joinAgent(t, id, cfg, "app=web").start(t)
	}
	// A device without the label gets nothing.
	other := h.joinAgent(t, "db-1", map[string]any{"sources": []any{}, "workloads": map[string]any{"address": "127.0.0.5"}}, "app=db")
	other.start(t)

	v1 := writeSpec(t, fmt.Sprintf(webSpec, "1.0.0", port, "", port, port))
	out := h.cli(t, "deploy", "apply", "-f", v1, "--wait", "--timeout", "2m")
	if !strings.Contains(out, "web") {
		t.Errorf("deploy apply printed %q", out)
	}
	for id, addr := range addrs {
		body, err := get(fmt.Sprintf("http://%s:%d/", addr, port))
		if err != nil || !strings.Contains(body, "websvc 1.0.0 on "+id) {
			t.Errorf("%s: %q, %v; want websvc 1.0.0 answering", id, body, err)
		}
	}
	if _, err := get(fmt.Sprintf("http://127.0.0.5:%d/", port)); err == nil {
		t.Error("db-1 runs web, but its labels do not match the selector")
	}
	st := h.deployStatus(t, "web")
	if st.State != "complete" || len(st.Devices) != 3 {
		t.Fatalf("status %s with %d devices, want complete with 3: %+v", st.State, len(st.Devices), st)
	}
	for _, d := range st.Devices {
		if !d.Healthy || d.State != "running" || d.Version != "1.0.0" || d.Revision != st.Revision {
			t.Errorf("%s: %+v; want running, healthy, 1.0.0 at revision %s", d.Device, d, st.Revision)
		}
	}
	table := h.cli(t, "deploy", "status", "web")
	for id := range addrs {
		if !strings.Contains(table, id) {
			t.Errorf("deploy status table lacks %s:\n%s", id, table)
		}
	}
	// Every device's instance is in the registry, passing, at the address
	// its agent advertises; an app on web-1 finds them through its agent.
	var resolved struct {
		Instances []struct {
			ID, Address, Health, Source string
			Port                        int
		} `json:"instances"`
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := json.Unmarshal([]byte(h.cli(t, "services", "resolve", "web", "-o", "json")), &resolved); err != nil {
			return err
		}
		if len(resolved.Instances) != 3 {
			return fmt.Errorf("%d passing instances of web, want 3: %+v", len(resolved.Instances), resolved.Instances)
		}
		return nil
	})
	for _, in := range resolved.Instances {
		if in.Address != addrs[in.ID] || in.Port != port || in.Health != "passing" || in.Source != "agent" {
			t.Errorf("instance %+v; want %s:%d passing, from the agent", in, addrs[in.ID], port)
		}
	}
	body, err := get("http://" + apiAddr + "/v1/services/web")
	if err != nil || strings.Count(body, `"address"`) != 3 {
		t.Errorf("web-1's local API answered %q, %v; want the 3 instances", body, err)
	}

	logs := h.cli(t, "logs", "web-1", "web", "--tail", "20")
	if !strings.Contains(logs, "websvc 1.0.0 started") {
		t.Errorf("outpost logs web-1 web printed %q", logs)
	}

	// v2 fails its health check: the first batch never becomes healthy.
	pids := map[string]string{}
	for id, addr := range addrs {
		body, _ := get(fmt.Sprintf("http://%s:%d/", addr, port))
		pids[id] = body
	}
	v2 := writeSpec(t, fmt.Sprintf(webSpec, "2.0.0", port, `, --fail-health`, port, port))
	_, stderr := run(t, h.env, "", false, bin.outpost, "deploy", "apply", "-f", v2, "--wait", "--timeout", "2m")
	if !strings.Contains(stderr, "fail") {
		t.Errorf("deploy apply --wait of a failing version printed %q on stderr", stderr)
	}
	st = h.deployStatus(t, "web")
	if st.State != "failed" {
		t.Fatalf("state %s (%s), want failed", st.State, st.Message)
	}
	// Exactly one device tried v2 and is back on v1; the two others were
	// never touched: same process answering.
	testutil.Eventually(t, 30*time.Second, func() error {
		untouched := 0
		for id, addr := range addrs {
			body, err := get(fmt.Sprintf("http://%s:%d/", addr, port))
			if err != nil || !strings.Contains(body, "websvc 1.0.0") {
				return fmt.Errorf("%s: %q, %v; want v1 serving", id, body, err)
			}
			if body == pids[id] {
				untouched++
			}
		}
		if untouched != 2 {
			return fmt.Errorf("%d devices kept their v1 process, want 2 (one was in the failed batch)", untouched)
		}
		return nil
	})

	// Labels move the service: db-1 gains app=web and gets the version
	// that last completed; web-3 loses it and stops the service.
	h.cli(t, "devices", "label", "db-1", "app=web")
	h.cli(t, "devices", "label", "web-3", "app-")
	testutil.Eventually(t, 60*time.Second, func() error {
		if body, err := get(fmt.Sprintf("http://127.0.0.5:%d/", port)); err != nil || !strings.Contains(body, "websvc 1.0.0 on db-1") {
			return fmt.Errorf("db-1: %q, %v; want v1 serving after the label change", body, err)
		}
		if _, err := get(fmt.Sprintf("http://%s:%d/", addrs["web-3"], port)); err == nil {
			return errors.New("web-3 still serves after losing its label")
		}
		return nil
	})
}

// startedAt matches the line websvc prints when it starts.
var startedAt = regexp.MustCompile(`websvc \S+ started at (\d+)`)

// TestDeployCrashLoopAndMemory deploys a service that crashes soon after
// each start (restarts are counted, the backoff between them grows) and
// one that allocates past its memory limit (it is killed and that is
// reported).
func TestDeployCrashLoopAndMemory(t *testing.T) {
	h := startHub(t)
	h.initKeys(t)
	h.publishWebsvc(t, "1.0.0")
	a := h.joinAgent(t, "edge-1", map[string]any{"sources": []any{}}, "site=lab")
	a.start(t)

	crashy := writeSpec(t, `name: crashy
artifact: websvc@1.0.0
args: [--port, "0", --crash-after, 100ms]
restart: {policy: always, backoff_min: 200ms, backoff_max: 10s}
selector: {site: lab}
strategy: {health_timeout: 5s}
`)
	h.cli(t, "deploy", "apply", "-f", crashy)
	testutil.Eventually(t, 60*time.Second, func() error {
		st := h.deployStatus(t, "crashy")
		if len(st.Devices) != 1 {
			return fmt.Errorf("%d devices", len(st.Devices))
		}
		d := st.Devices[0]
		if d.Restarts < 4 || d.LastExit == nil || d.LastExit.Code != 1 || d.LastExit.Reason != "error" {
			return fmt.Errorf("restarts %d, last exit %+v; want ≥4 restarts after exit code 1", d.Restarts, d.LastExit)
		}
		return nil
	})
	// The gaps between starts grow: 200ms, 400ms, 800ms, … plus the 100ms
	// each run lasts.
	var starts []int64
	for _, m := range startedAt.FindAllStringSubmatch(h.cli(t, "logs", "edge-1", "crashy", "--tail", "100"), -1) {
		ms, _ := strconv.ParseInt(m[1], 10, 64)
		starts = append(starts, ms)
	}
	if len(starts) < 5 {
		t.Fatalf("%d starts in the logs, want ≥5", len(starts))
	}
	first, last := starts[1]-starts[0], starts[len(starts)-1]-starts[len(starts)-2]
	if last < 2*first {
		t.Errorf("gaps between starts %v: the last gap %dms is not at least twice the first %dms", starts, last, first)
	}
	table := h.cli(t, "deploy", "status", "crashy")
	if !strings.Contains(table, "backoff") && !strings.Contains(table, "starting") {
		t.Errorf("deploy status shows no crash loop state:\n%s", table)
	}
	h.cli(t, "deploy", "rm", "crashy")

	hog := writeSpec(t, `name: hog
artifact: websvc@1.0.0
args: [--port, "0", --alloc-mb, "200"]
resources: {memory: 48Mi}
restart: {backoff_min: 1s, backoff_max: 1s}
selector: {site: lab}
`)
	h.cli(t, "deploy", "apply", "-f", hog)
	var limits string
	testutil.Eventually(t, 60*time.Second, func() error {
		st := h.deployStatus(t, "hog")
		if len(st.Devices) != 1 {
			return fmt.Errorf("%d devices", len(st.Devices))
		}
		d := st.Devices[0]
		limits = d.Limits
		if d.LastExit == nil || (d.LastExit.Reason != "oom_killed" && d.LastExit.Reason != "memory_limit") {
			return fmt.Errorf("last exit %+v (limits %q); want the process killed for memory", d.LastExit, d.Limits)
		}
		return nil
	})
	t.Logf("memory limit enforced via %q", limits)
	if os.Getenv("CI") == "true" {
		fmt.Printf("TestDeployCrashLoopAndMemory: memory limit enforced via %q\n", limits)
	}
	if logs := h.cli(t, "logs", "edge-1", "hog", "--tail", "50"); strings.Contains(logs, "holding 200 MiB") {
		t.Errorf("the hog reached 200 MiB under a 48Mi limit:\n%s", logs)
	}
}

// TestDeployAutonomy restarts an agent while the hub is down: its
// workload comes back from the agent's own state; when the hub returns,
// the statuses reconcile without restarting anything.
func TestDeployAutonomy(t *testing.T) {
	h := newFixedHub(t)
	h.initKeys(t)
	h.publishWebsvc(t, "1.0.0")
	port := freePort(t)
	a := h.joinAgent(t, "solo-1", map[string]any{"sources": []any{}, "workloads": map[string]any{"address": "127.0.0.6"}}, "app=web")
	p := a.start(t)
	spec := writeSpec(t, fmt.Sprintf(webSpec, "1.0.0", port, "", port, port))
	h.cli(t, "deploy", "apply", "-f", spec, "--wait", "--timeout", "2m")
	url := fmt.Sprintf("http://127.0.0.6:%d/", port)
	if body, err := get(url); err != nil || !strings.Contains(body, "websvc 1.0.0 on solo-1") {
		t.Fatalf("before: %q, %v", body, err)
	}

	h.kill(t)
	p.stop(t)
	if _, err := get(url); err == nil {
		t.Fatal("the service still answers after the agent stopped")
	}
	a.start(t)
	var body string
	testutil.Eventually(t, 15*time.Second, func() error {
		var err error
		body, err = get(url)
		if err == nil && !strings.Contains(body, "websvc 1.0.0 on solo-1") {
			err = errors.New(body)
		}
		return err
	})

	h.restart(t)
	testutil.Eventually(t, 60*time.Second, func() error {
		st := h.deployStatus(t, "web")
		if len(st.Devices) != 1 || !st.Devices[0].Healthy || st.Devices[0].Revision != st.Revision {
			return fmt.Errorf("status %+v; want solo-1 healthy at %s", st.Devices, st.Revision)
		}
		if st.Devices[0].Restarts != 0 {
			return fmt.Errorf("restarts %d after the hub came back, want 0", st.Devices[0].Restarts)
		}
		return nil
	})
	// Same process as before the hub came back: nothing was restarted.
	if again, err := get(url); err != nil || again != body {
		t.Errorf("after the hub came back the service answered %q (%v), before %q: it was restarted", again, err, body)
	}
}
