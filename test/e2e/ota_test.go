package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/execbusy"
	"github.com/outpost-edge/outpost/internal/testutil"
)

// rolloutState is what `outpost rollouts show -o json` prints, in part.
type rolloutState struct {
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	WaveStates []struct {
		Executions []struct {
			Device        string            `json:"device"`
			Status        string            `json:"status"`
			StatusDetails map[string]string `json:"status_details"`
		} `json:"executions"`
	} `json:"wave_states"`
}

func (h *hubProc) rollout(t *testing.T, id string) rolloutState {
	t.Helper()
	var r rolloutState
	if err := json.Unmarshal([]byte(h.cli(t, "rollouts", "show", id, "-o", "json")), &r); err != nil {
		t.Fatalf("rollouts show: %v", err)
	}
	return r
}

// waitRollout waits until rollout id has status want.
func (h *hubProc) waitRollout(t *testing.T, id, want string, timeout time.Duration) rolloutState {
	t.Helper()
	var r rolloutState
	testutil.Eventually(t, timeout, func() error {
		r = h.rollout(t, id)
		if r.Status != want {
			return fmt.Errorf("rollout %s is %s (%s), want %s; executions %+v", id, r.Status, r.Reason, want, r.WaveStates)
		}
		return nil
	})
	return r
}

func (h *hubProc) initKeys(t *testing.T) {
	t.Helper()
	out := h.cli(t, "keys", "init", "--root-key", filepath.Join(t.TempDir(), "root.key"))
	if !strings.Contains(strings.ToLower(out), "root") {
		t.Fatalf("keys init printed %q", out)
	}
}

// TestOTAFileRollout publishes a signed file artifact, rolls it out to two
// real agents in two waves, then a patch release as a delta.
func TestOTAFileRollout(t *testing.T) {
	h := startHub(t)
	h.initKeys(t)
	dests := map[string]string{}
	for _, id := range []string{"cam-1", "cam-2"} {
		dests[id] = filepath.Join(t.TempDir(), "model.bin")
		a := h.joinAgent(t, id, map[string]any{
			"sources": []any{},
			"ota":     map[string]any{"files": map[string]any{"model": map[string]any{"path": dests[id], "mode": 0o640}}},
		})
		a.start(t)
	}

	v1 := make([]byte, 256<<10)
	_, _ = rand.Read(v1)
	f1 := filepath.Join(t.TempDir(), "model-1.bin")
	if err := os.WriteFile(f1, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	h.cli(t, "artifacts", "publish", f1, "--name", "model", "--version", "1.0.0", "--type", "file", "--platform", "any")
	h.cli(t, "rollouts", "create", "--artifact", "model@1.0.0", "--waves", "50%,100%", "--soak", "0s", "--id", "model-1")
	r := h.waitRollout(t, "model-1", "completed", 60*time.Second)
	for id, dest := range dests {
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(got, v1) {
			t.Errorf("%s: %s has %d bytes (%v), want version 1.0.0's %d", id, dest, len(got), err, len(v1))
		}
		if fi, err := os.Stat(dest); err == nil && fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", dest, fi.Mode().Perm())
		}
	}
	if n := len(r.WaveStates); n != 2 {
		t.Errorf("%d waves, want 2", n)
	}

	// A patch release: 1 % of the bytes change; devices get the delta.
	v2 := bytes.Clone(v1)
	for i := 0; i < len(v2); i += 100 {
		v2[i] ^= 0xff
	}
	f2 := filepath.Join(t.TempDir(), "model-2.bin")
	if err := os.WriteFile(f2, v2, 0o600); err != nil {
		t.Fatal(err)
	}
	out := h.cli(t, "artifacts", "publish", f2, "--name", "model", "--version", "1.0.1", "--type", "file", "--platform", "any", "--delta-from", "1.0.0")
	if !strings.Contains(out, "1.0.1") {
		t.Errorf("publish printed %q", out)
	}
	h.cli(t, "rollouts", "create", "--artifact", "model@1.0.1", "--waves", "100%", "--soak", "0s", "--id", "model-2")
	r = h.waitRollout(t, "model-2", "completed", 60*time.Second)
	for id, dest := range dests {
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, v2) {
			t.Errorf("%s: %s is not version 1.0.1", id, dest)
		}
	}
	for _, e := range r.WaveStates[0].Executions {
		if e.Status != "SUCCEEDED" || e.StatusDetails["delta"] != "applied" || e.StatusDetails["stage"] != "committed" {
			t.Errorf("%s: %s %v; want SUCCEEDED with the delta applied", e.Device, e.Status, e.StatusDetails)
		}
	}

	// A device that has nowhere to put an artifact refuses it with the
	// reason, and the rollout pauses.
	h.cli(t, "artifacts", "publish", f1, "--name", "firmware", "--version", "2.0.0", "--type", "file", "--platform", "any")
	h.cli(t, "rollouts", "create", "--artifact", "firmware@2.0.0", "--waves", "100%", "--soak", "0s", "--id", "fw-2")
	r = h.waitRollout(t, "fw-2", "paused", 60*time.Second)
	if !strings.Contains(r.Reason, "2 of 2 devices failed (FAILED 2)") {
		t.Errorf("pause reason %q", r.Reason)
	}
	for _, e := range r.WaveStates[0].Executions {
		if e.StatusDetails["reason"] != "not_configured" {
			t.Errorf("%s: %v; want reason not_configured", e.Device, e.StatusDetails)
		}
	}
}

// supervised runs an agent the way systemd's Restart=always does: every
// exit is followed by a new start, until the test ends.
type supervised struct {
	mu     sync.Mutex
	starts int
	out    bytes.Buffer
	stop   chan struct{}
	done   chan struct{}
}

func (s *supervised) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(b)
}

func (s *supervised) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func superviseAgent(t *testing.T, a *agentDir, maxStarts int) *supervised {
	t.Helper()
	s := &supervised{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			s.mu.Lock()
			s.starts++
			n := s.starts
			s.mu.Unlock()
			if n > maxStarts {
				return
			}
			cmd := exec.Command(bin.agent, "run", "--data", a.dir)
			cmd.Stdout, cmd.Stderr = s, s
			if err := cmd.Start(); err != nil {
				fmt.Fprintf(s, "supervisor: %v\n", err)
				return
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				fmt.Fprintf(s, "supervisor: agent exited: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			case <-s.stop:
				_ = cmd.Process.Kill()
				<-exited
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		<-s.done
		if t.Failed() {
			t.Logf("supervised agent output:\n%s", tail(s.output(), 80))
		}
	})
	return s
}

func (h *hubProc) agentVersion(t *testing.T, id string) string {
	t.Helper()
	var d struct {
		AgentVersion string `json:"agent_version"`
	}
	if err := json.Unmarshal([]byte(h.cli(t, "devices", "show", id, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d.AgentVersion
}

// TestOTAAgentSelfUpdate updates a real agent to a new build through its
// A/B slots, then rolls out a build that crashes at start: the trial is
// rolled back, the job fails with the reason and the rollout pauses.
func TestOTAAgentSelfUpdate(t *testing.T) {
	dir := t.TempDir()
	v2 := filepath.Join(dir, "outpost-agent-2.0.0")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=2.0.0", "-o", v2, "./cmd/outpost-agent")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building version 2.0.0: %v\n%s", err, out)
	}
	broken := filepath.Join(dir, "outpost-agent-3.0.0")
	script := "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'outpost-agent 3.0.0'; exit 0; fi\necho 'crashing at start' >&2\nexit 1\n"
	if err := execbusy.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	h := startHub(t)
	h.initKeys(t)
	a := h.joinAgent(t, "gw-1", map[string]any{"sources": []any{}, "ota": map[string]any{"commit_window": "20s"}})
	s := superviseAgent(t, a, 20)
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := h.agentVersion(t, "gw-1"); v != "0.1.0-dev" {
			return fmt.Errorf("agent version %q", v)
		}
		return nil
	})

	plat := runtime.GOOS + "/" + runtime.GOARCH
	h.cli(t, "artifacts", "publish", v2, "--name", "outpost-agent", "--version", "2.0.0", "--type", "agent", "--platform", plat)
	h.cli(t, "rollouts", "create", "--artifact", "outpost-agent@2.0.0", "--waves", "100%", "--soak", "0s", "--id", "agent-2")
	r := h.waitRollout(t, "agent-2", "completed", 90*time.Second)
	if e := r.WaveStates[0].Executions[0]; e.Status != "SUCCEEDED" || e.StatusDetails["stage"] != "committed" {
		t.Errorf("job: %s %v, want SUCCEEDED committed", e.Status, e.StatusDetails)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := h.agentVersion(t, "gw-1"); v != "2.0.0" {
			return fmt.Errorf("agent version %q, want 2.0.0", v)
		}
		return nil
	})
	raw, err := os.ReadFile(filepath.Join(a.dir, "slots", "state.json"))
	var state struct {
		ActiveVersion string `json:"active_version"`
		LastResult    struct {
			Outcome string `json:"outcome"`
			JobID   string `json:"job_id"`
		} `json:"last_result"`
	}
	if err != nil || json.Unmarshal(raw, &state) != nil || state.ActiveVersion != "2.0.0" || state.LastResult.Outcome != "committed" || state.LastResult.JobID != "agent-2-w1" {
		t.Errorf("slots state %s (%v), want 2.0.0 committed by job agent-2-w1", raw, err)
	}

	// A build that crashes at start: rolled back after 3 starts.
	h.cli(t, "artifacts", "publish", broken, "--name", "outpost-agent", "--version", "3.0.0", "--type", "agent", "--platform", plat)
	h.cli(t, "rollouts", "create", "--artifact", "outpost-agent@3.0.0", "--waves", "100%", "--soak", "0s", "--id", "agent-3")
	r = h.waitRollout(t, "agent-3", "paused", 120*time.Second)
	e := r.WaveStates[0].Executions[0]
	if e.Status != "FAILED" || e.StatusDetails["reason"] != "crash_loop" || e.StatusDetails["stage"] != "rolled_back" {
		t.Errorf("job: %s %v, want FAILED at stage rolled_back with reason crash_loop", e.Status, e.StatusDetails)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := h.agentVersion(t, "gw-1"); v != "2.0.0" {
			return fmt.Errorf("agent version %q, want 2.0.0 back", v)
		}
		return nil
	})
	if n := strings.Count(s.output(), "crashing at start"); n != 3 {
		t.Errorf("the broken build started %d times, want 3", n)
	}
}

// TestOTADownloadKilledResumes kills the agent with SIGKILL in the middle
// of a slow artifact download; the next start resumes the download from
// its checkpoint (re-fetching less than 10 % of the file), installs it,
// and the job ends SUCCEEDED.
func TestOTADownloadKilledResumes(t *testing.T) {
	h := startHub(t)
	h.initKeys(t)
	proxy := startProxy(t, strings.TrimPrefix(h.url, "http://"))
	dest := filepath.Join(t.TempDir(), "model.bin")
	a := h.joinAgent(t, "cam-9", map[string]any{
		"sources": []any{},
		"hub_url": "http://" + proxy.Listen,
		"ota":     map[string]any{"files": map[string]any{"model": map[string]any{"path": dest}}},
	})
	const size = 3 << 20
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	f := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(f, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	h.cli(t, "artifacts", "publish", f, "--name", "model", "--version", "1.0.0", "--type", "file", "--platform", "any")
	// 512 KB/s from the hub to the agent: about 6 s for the file.
	addToxic(t, proxy, `{"name":"slow","type":"bandwidth","stream":"downstream","attributes":{"rate":512}}`)

	p := a.start(t)
	h.cli(t, "rollouts", "create", "--artifact", "model@1.0.0", "--waves", "100%", "--soak", "0s", "--id", "model-1")
	testutil.Eventually(t, 60*time.Second, func() error {
		r := h.rollout(t, "model-1")
		if len(r.WaveStates) == 0 || len(r.WaveStates[0].Executions) == 0 {
			return errors.New("no execution yet")
		}
		d := r.WaveStates[0].Executions[0].StatusDetails
		if pct, _ := strconv.Atoi(d["progress"]); d["stage"] != "downloading" || pct < 30 {
			return fmt.Errorf("job at %v", d)
		}
		return nil
	})
	kill(t, p)
	part, _ := filepath.Glob(filepath.Join(a.dir, "ota", "downloads", "*.part"))
	if len(part) != 1 {
		t.Fatalf("checkpoints after the kill: %v, want one .part file", part)
	}
	removeToxic(proxy, "slow")(t)

	p = a.start(t)
	r := h.waitRollout(t, "model-1", "completed", 60*time.Second)
	d := r.WaveStates[0].Executions[0].StatusDetails
	refetched, err := strconv.Atoi(d["bytes_refetched"])
	if err != nil || refetched > size/10 || d["resumes"] != "1" {
		t.Errorf("job details %v; want one resume and under %d bytes re-fetched", d, size/10)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, blob) {
		t.Errorf("%s does not hold the artifact", dest)
	}
	p.stop(t)
}

// TestOTARolloutSurvivesHubKill kills the hub with SIGKILL while a rollout
// soaks between its waves; the restarted hub goes on and completes it.
func TestOTARolloutSurvivesHubKill(t *testing.T) {
	f := newFixedHub(t)
	f.initKeys(t)
	dests := map[string]string{}
	for _, id := range []string{"cam-1", "cam-2", "cam-3"} {
		dests[id] = filepath.Join(t.TempDir(), "model.bin")
		a := f.joinAgent(t, id, map[string]any{
			"sources": []any{},
			"mqtt":    map[string]any{"backoff_max": "1s"},
			"ota":     map[string]any{"files": map[string]any{"model": map[string]any{"path": dests[id]}}},
		})
		a.start(t)
	}
	blob := make([]byte, 64<<10)
	_, _ = rand.Read(blob)
	src := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(src, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	f.cli(t, "artifacts", "publish", src, "--name", "model", "--version", "1.0.0", "--type", "file", "--platform", "any")
	f.cli(t, "rollouts", "create", "--artifact", "model@1.0.0", "--waves", "1,100%", "--soak", "4s", "--id", "model-1")
	testutil.Eventually(t, 60*time.Second, func() error {
		r := f.rollout(t, "model-1")
		if len(r.WaveStates) != 2 || len(r.WaveStates[0].Executions) != 1 || r.WaveStates[0].Executions[0].Status != "SUCCEEDED" {
			return fmt.Errorf("wave 1 not done: %+v", r.WaveStates)
		}
		return nil
	})
	f.kill(t) // during the soak of wave 1
	f.restart(t)
	r := f.waitRollout(t, "model-1", "completed", 90*time.Second)
	for _, w := range r.WaveStates {
		for _, e := range w.Executions {
			if e.Status != "SUCCEEDED" {
				t.Errorf("%s: %s %v", e.Device, e.Status, e.StatusDetails)
			}
		}
	}
	for id, dest := range dests {
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, blob) {
			t.Errorf("%s: %s does not hold the artifact", id, dest)
		}
	}
}
