package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/sim"
	"github.com/outpost-edge/outpost/internal/testutil"
)

func runSim(t *testing.T, args ...string) (*sim.Result, string) {
	t.Helper()
	out, stderr, err := run(t, "", append([]string{"sim", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("outpost sim %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	var res sim.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("sim -o json printed %q: %v", out, err)
	}
	return &res, stderr
}

// TestSimAgainstRealHub runs a small simulated fleet against a real hub and
// checks what the hub received: the devices, their telemetry and their
// shadows, and that the round trips were measured.
func TestSimAgainstRealHub(t *testing.T) {
	h := startRealHubFull(t)
	const devices, probes = 20, 40
	res, stderr := runSim(t, "--devices", fmt.Sprint(devices), "--rate", "20", "--publish-every", "100ms",
		"--probes", fmt.Sprint(probes), "--probe-concurrency", "4", "--duration", "1s", "--label", "site=lab")

	if res.Enrolled != devices || res.Connected != devices {
		t.Errorf("enrolled %d, connected %d; want %d each", res.Enrolled, res.Connected, devices)
	}
	for _, want := range []string{"enrolled 20 devices", "connected 20/20 devices", "shadow round trips: 40 ok, 0 failed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	s := res.Shadow
	if s == nil || s.Probes != probes || s.OK != probes || s.Failed != 0 {
		t.Fatalf("shadow = %+v, want %d ok round trips", s, probes)
	}
	if s.P50 <= 0 || s.P50 > s.P90 || s.P90 > s.P99 || s.P99 > s.Max || s.Mean <= 0 {
		t.Errorf("percentiles out of order: %+v", s)
	}
	tm := res.Telemetry
	if tm.Acked == 0 || tm.Failed != 0 || tm.Acked != tm.Sent {
		t.Errorf("telemetry = %+v, want points sent and all acknowledged", tm)
	}
	// Every acknowledged batch (of about 2 points) was timed: publish →
	// PUBACK, which the hub sends after the commit.
	p := res.Publish
	if p == nil {
		t.Fatal("no publish latency at QoS 1")
	}
	if p.Count == 0 || p.Count > tm.Acked || p.Count < tm.Acked/4 {
		t.Errorf("publish latency of %d publishes for %d acknowledged points", p.Count, tm.Acked)
	}
	if p.P50 <= 0 || p.P50 > p.P90 || p.P90 > p.P99 || p.P99 > p.Max || p.Mean <= 0 || p.Mean > p.Max {
		t.Errorf("publish latency out of order: %+v", p)
	}

	// The hub has the devices with their labels, their points and the
	// reported probe values.
	var list struct {
		Devices []struct {
			ID     string            `json:"id"`
			Labels map[string]string `json:"labels"`
		} `json:"devices"`
	}
	h.API(t, "GET", "/api/v1/devices?label=simulated=true", nil, http.StatusOK, &list)
	if len(list.Devices) != devices {
		t.Fatalf("hub lists %d simulated devices, want %d", len(list.Devices), devices)
	}
	if l := list.Devices[0].Labels; l["site"] != "lab" {
		t.Errorf("labels of %s = %v, want site=lab", list.Devices[0].ID, l)
	}
	var stored uint64
	for i := 1; i <= devices; i++ {
		id := fmt.Sprintf("sim-%05d", i)
		var q struct {
			Points []struct {
				Seq    uint64 `json:"seq"`
				Sensor string `json:"sensor"`
			} `json:"points"`
		}
		h.API(t, "GET", "/api/v1/devices/"+id+"/telemetry?since=5m&limit=10000", nil, http.StatusOK, &q)
		seen := map[uint64]bool{}
		for _, p := range q.Points {
			if seen[p.Seq] {
				t.Errorf("%s: seq %d stored twice", id, p.Seq)
			}
			seen[p.Seq] = true
			if p.Sensor != "temperature" && p.Sensor != "humidity" && p.Sensor != "vibration" {
				t.Errorf("%s: unexpected sensor %q", id, p.Sensor)
			}
		}
		stored += uint64(len(q.Points))
	}
	// Points acknowledged before the measured window are stored too.
	if stored < tm.Acked {
		t.Errorf("hub stored %d points, fewer than the %d acknowledged", stored, tm.Acked)
	}
	var doc struct {
		State struct {
			Desired  map[string]map[string]any `json:"desired"`
			Reported map[string]map[string]any `json:"reported"`
		} `json:"state"`
	}
	h.API(t, "GET", "/api/v1/devices/sim-00001/shadow", nil, http.StatusOK, &doc)
	d, r := doc.State.Desired["sim"]["probe"], doc.State.Reported["sim"]["probe"]
	if d == nil || d != r {
		t.Errorf("sim-00001 desired probe %v, reported %v: want the same value", d, r)
	}

	// A second run re-enrolls the same devices and, with --cleanup,
	// removes them at the end.
	res, _ = runSim(t, "--devices", fmt.Sprint(devices), "--rate", "0", "--probes", "5", "--cleanup")
	if res.Connected != devices || res.Shadow.OK != 5 {
		t.Errorf("second run: connected %d, %d round trips ok", res.Connected, res.Shadow.OK)
	}
	h.API(t, "GET", "/api/v1/devices", nil, http.StatusOK, &list)
	if len(list.Devices) != 0 {
		t.Errorf("after --cleanup the hub still lists %d devices", len(list.Devices))
	}
}

func TestSimReportsFailedRoundTrips(t *testing.T) {
	startRealHub(t)
	out, _, err := run(t, "", "sim", "--devices", "2", "--rate", "0", "--probes", "3", "--probe-timeout", "1ns", "--cleanup")
	if err == nil || !strings.Contains(err.Error(), "3 of 3 shadow round trips failed") {
		t.Fatalf("err = %v, want 3 failed round trips", err)
	}
	if !strings.Contains(out, "3 round trips: 0 ok, 3 failed") {
		t.Errorf("summary:\n%s", out)
	}

	// A hub that answers no round trip does not keep the run going for
	// probes × timeout: it stops after 20 failures in a row.
	_, _, err = run(t, "", "sim", "--devices", "2", "--rate", "0", "--probes", "1000", "--probe-timeout", "1ns", "--cleanup")
	if err == nil || !strings.Contains(err.Error(), "1000 of 1000 shadow round trips failed") ||
		!strings.Contains(err.Error(), "stopped probing after 20 round trips in a row failed") {
		t.Fatalf("err = %v, want the run to give up after 20 failures", err)
	}
}

func TestSimErrors(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--devices", "0"}, "devices must be 1 to 100000"},
		{[]string{"--rate", "-1"}, "rate must be 0 to"},
		{[]string{"--devices", "5", "--probe-concurrency", "6"}, "probe concurrency must be 1 to the number of devices (5)"},
		{[]string{"--prefix", "bad/prefix"}, `device id prefix "bad/prefix"`},
		{[]string{"--qos", "3"}, "QoS must be 0, 1 or 2"},
		{[]string{"--rate", "10000", "--publish-every", "1s"}, "more than the 5000 a batch may hold"},
		{[]string{"--label", "simulated=no"}, `label "simulated" is set by the simulator`},
		{[]string{"--mqtt", "http://x"}, `MQTT URL "http://x" must be`},
		{[]string{"--source-ips", "127.0.0.9-127.0.0.2"}, `source IPs "127.0.0.9-127.0.0.2": range ends at 127.0.0.2, before it starts`},
		{[]string{"--source-ips", "127.0.0.2-9"}, `"9" is not an IP address`},
		{[]string{"--hub", "http://127.0.0.1:1", "--token", "x", "--devices", "1"}, "cannot reach hub at http://127.0.0.1:1"},
	} {
		_, _, err := run(t, "", append([]string{"sim"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sim %v: err = %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// TestSimSourceIPs connects a fleet from two loopback source addresses
// and checks that the hub saw the devices connected.
func TestSimSourceIPs(t *testing.T) {
	startRealHub(t)
	res, _ := runSim(t, "--devices", "4", "--rate", "0", "--probes", "4", "--source-ips", "127.0.0.2,127.0.0.3", "--cleanup")
	if res.Connected != 4 || res.Shadow == nil || res.Shadow.OK != 4 {
		t.Errorf("result %+v, want 4 devices connected and 4 round trips", res)
	}
}

func TestSimNoDeviceConnects(t *testing.T) {
	startRealHub(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := run(t, "", "sim", "--devices", "2", "--rate", "5", "--mqtt", "mqtt://127.0.0.1:1", "--connect-timeout", "1s", "--cleanup")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no simulated device could connect") {
			t.Errorf("err = %v, want no device could connect", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sim did not return when no device could connect")
	}
}

func TestSimJSONExitStatus(t *testing.T) {
	startRealHub(t)
	out, _, err := run(t, "", "sim", "-o", "json", "--devices", "1", "--rate", "0", "--probes", "2", "--probe-timeout", "1ns", "--cleanup")
	if err == nil || !strings.Contains(err.Error(), "2 of 2 shadow round trips failed") {
		t.Errorf("err = %v, want failed round trips with -o json too", err)
	}
	var res sim.Result
	if json.Unmarshal([]byte(out), &res) != nil || res.Shadow == nil || res.Shadow.Failed != 2 {
		t.Errorf("-o json printed %q, want the result with 2 failed", out)
	}
}

func TestSimDuration(t *testing.T) {
	startRealHub(t)
	start := time.Now()
	res, _ := runSim(t, "--devices", "3", "--rate", "5", "--duration", "300ms", "--cleanup")
	if res.Connected != 3 || res.Telemetry.Elapsed < 300*time.Millisecond {
		t.Errorf("result %+v", res)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a 300ms run took %s", d)
	}
}

// TestSimTextSummary checks the text summary and the progress lines of a
// telemetry run, and that QoS 0 has no publish latency (nothing is
// acknowledged).
func TestSimTextSummary(t *testing.T) {
	startRealHub(t)
	out, stderr, err := run(t, "", "sim", "--devices", "3", "--rate", "20", "--publish-every", "100ms", "--duration", "1500ms", "--cleanup")
	if err != nil {
		t.Fatalf("sim: %v\nstderr:\n%s", err, stderr)
	}
	if !regexp.MustCompile(`(?m)^publish     p50 [0-9.]+ms  p90 [0-9.]+ms  p99 [0-9.]+ms  max [0-9.]+ms  mean [0-9.]+ms$`).MatchString(out) {
		t.Errorf("summary lacks the publish line:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^3 devices connected, [0-9]+ points/s acknowledged \([0-9]+ in all\), 0 points failed, publish p99 [0-9.]+ms$`).MatchString(stderr) {
		t.Errorf("progress lacks the per-second telemetry line:\n%s", stderr)
	}

	res, _ := runSim(t, "--devices", "2", "--rate", "20", "--publish-every", "100ms", "--qos", "0", "--duration", "300ms", "--cleanup")
	if res.Telemetry.Acked == 0 || res.Publish != nil {
		t.Errorf("QoS 0: telemetry %+v, publish latency %+v; want points and no latency", res.Telemetry, res.Publish)
	}
}

// TestRolloutWithSimulatedFleet rolls an artifact out to 21 simulated
// devices over real MQTT connections; a third of the devices fail from
// wave 2 on, so the rollout pauses in wave 2 and names the count; abort
// ends it without starting wave 3.
func TestRolloutWithSimulatedFleet(t *testing.T) {
	h := startRealHubFull(t)
	dir := t.TempDir()
	mustRun(t, "keys", "init", "--root-key", filepath.Join(dir, "root.key"))
	mustRun(t, "artifacts", "publish", writeTemp(t, dir, "model v2"), "--name", "model", "--version", "2.0.0", "--type", "file", "--platform", "any")

	fails := func(dev, job string) bool { return !strings.HasSuffix(job, "-w1") && sim.FailsJobs(dev, 0.34) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sim.Run(ctx, restSimHub{newClient(h.HTTPURL(), h.Token)}, sim.Options{
			HubURL: h.HTTPURL(), Devices: 21, JobDuration: 10 * time.Millisecond, FailJob: fails, Cleanup: true,
		})
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sim: %v", err)
		}
	}()
	testutil.Eventually(t, 30*time.Second, func() error {
		var list struct{ Devices []struct{ Online bool } }
		if err := json.Unmarshal([]byte(mustRun(t, "devices", "ls", "-o", "json")), &list); err != nil {
			return err
		}
		online := 0
		for _, d := range list.Devices {
			if d.Online {
				online++
			}
		}
		if online != 21 {
			return fmt.Errorf("%d of 21 devices online", online)
		}
		return nil
	})

	mustRun(t, "rollouts", "create", "--artifact", "model@2.0.0", "--waves", "1,50%,100%", "--soak", "0s", "--id", "model-2")
	var r struct {
		Status, Reason string
		WaveStates     []struct {
			Started    bool
			Executions []struct{ Device, Status string }
		} `json:"wave_states"`
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if err := json.Unmarshal([]byte(mustRun(t, "rollouts", "show", "model-2", "-o", "json")), &r); err != nil {
			return err
		}
		if r.Status != "paused" {
			return fmt.Errorf("rollout %s (%s)", r.Status, r.Reason)
		}
		return nil
	})
	if len(r.WaveStates) != 3 || r.WaveStates[0].Executions[0].Status != "SUCCEEDED" || r.WaveStates[2].Started {
		t.Fatalf("waves %+v; want wave 1 succeeded and wave 3 not started", r.WaveStates)
	}
	wantFailed := 0
	for _, e := range r.WaveStates[1].Executions {
		if fails(e.Device, "model-2-w2") {
			wantFailed++
		}
	}
	// The rollout pauses as soon as the threshold can no longer be met,
	// which may be before every device of the wave has reported.
	var failed int
	if _, err := fmt.Sscanf(r.Reason, "wave 2: %d of 10 devices failed", &failed); err != nil || failed < 1 || failed > wantFailed {
		t.Errorf("pause reason %q; want wave 2 with 1 to %d failed of 10", r.Reason, wantFailed)
	}
	for _, e := range r.WaveStates[1].Executions {
		if e.Status == "FAILED" && !fails(e.Device, "model-2-w2") {
			t.Errorf("%s failed but was not chosen to fail", e.Device)
		}
	}
	out := mustRun(t, "rollouts", "show", "model-2", "--devices")
	if !strings.Contains(out, "simulated_failure") || !strings.Contains(out, "paused") {
		t.Errorf("rollouts show --devices:\n%s", out)
	}
	out = mustRun(t, "rollouts", "abort", "model-2", "--reason", "bad build")
	if !strings.Contains(out, "aborted") {
		t.Errorf("abort printed %q", out)
	}
}
