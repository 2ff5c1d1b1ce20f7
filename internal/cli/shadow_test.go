package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/protocol"
)

// startRealHub runs a hub in-process on free ports, logs the CLI in to it
// and returns its URL.
func startRealHub(t *testing.T) string {
	t.Helper()
	return startRealHubFull(t).HTTPURL()
}

// startRealHubFull is startRealHub returning the hub itself.
func startRealHubFull(t *testing.T) *hubtest.Hub {
	t.Helper()
	cleanEnv(t)
	h := hubtest.Start(t)
	if _, _, err := run(t, h.AdminPassword(t), "login", "--hub", h.HTTPURL(), "--user", "admin", "--password-stdin"); err != nil {
		t.Fatalf("login: %v", err)
	}
	return h
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
		{"no device, no selector", []string{"shadow", "set"}, "give a DEVICE, or --selector"},
		{"selector matches nothing", []string{"shadow", "set", "--selector", "site=nowhere", "a=1"}, "no device matches --selector site=nowhere; nothing changed"},
		{"selector not key=value", []string{"shadow", "set", "--selector", "site", "a=1"}, "want LABEL=VALUE"},
		{"selector and if-match", []string{"shadow", "set", "-l", "site=x", "a=1", "--if-match", "1"}, "cannot be combined with --selector"},
		{"rollout flags without selector", []string{"shadow", "set", "pump-7", "a=1", "--batch", "5"}, "--batch: only with --selector"},
		{"bad rollout flags", []string{"shadow", "set", "-l", "site=x", "a=1", "--batch", "0%", "--timeout", "0s"}, "--batch: batch size \"0%\""},
		{"bad timeout", []string{"shadow", "set", "-l", "site=x", "a=1", "--batch", "0%", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{"selector, nothing to set", []string{"shadow", "set", "-l", "site=x"}, "nothing to set"},
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

// simDevice is a simulated device: a raw MQTT client that subscribes to its
// shadow delta and, if it answers, reports the delta's values back.
type simDevice struct {
	id     string
	client *paho.Client
	deltas chan []byte
}

// startSimDevice registers id with labels through the CLI, joins it and
// connects it. A device that does not answer receives deltas but never
// reports.
func startSimDevice(t *testing.T, h *hubtest.Hub, id string, answers bool, labels ...string) {
	t.Helper()
	args := []string{"devices", "add", id, "-o", "json"}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	var add joinResponse
	if err := json.Unmarshal([]byte(mustRun(t, args...)), &add); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": add.JoinToken})
	resp, err := http.Post(h.HTTPURL()+"/api/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		MQTTPassword string `json:"mqtt_password"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cred)
	resp.Body.Close()
	if err != nil || cred.MQTTPassword == "" {
		t.Fatalf("joining %s: %v (status %d)", id, err, resp.StatusCode)
	}

	conn, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	d := &simDevice{id: id, deltas: make(chan []byte, 16)}
	delta := protocol.ShadowTopic(id, "", protocol.ShadowOpUpdate, protocol.ShadowDelta)
	d.client = paho.NewClient(paho.ClientConfig{
		Conn:     conn,
		ClientID: id,
		// The handler runs on paho's reading goroutine, which must not
		// block on a publish's acknowledgement; a worker answers instead.
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Topic == delta && answers {
				select {
				case d.deltas <- pr.Packet.Payload:
				default:
					t.Errorf("%s: delta queue full", id)
				}
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := d.client.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(cred.MQTTPassword)})
	if err != nil || ca.ReasonCode != 0 {
		conn.Close()
		t.Fatalf("connecting %s: %v", id, err)
	}
	if _, err := d.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: delta, QoS: 1}}}); err != nil {
		t.Fatalf("subscribing %s to its delta: %v", id, err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.answer(t, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		_ = d.client.Disconnect(&paho.Disconnect{})
	})
}

// answer reports the values of every delta until stop is closed.
func (d *simDevice) answer(t *testing.T, stop <-chan struct{}) {
	update := protocol.ShadowTopic(d.id, "", protocol.ShadowOpUpdate, "")
	for {
		var payload []byte
		select {
		case <-stop:
			return
		case payload = <-d.deltas:
		}
		var delta struct {
			State json.RawMessage `json:"state"`
		}
		if err := json.Unmarshal(payload, &delta); err != nil {
			t.Errorf("%s: decoding delta %s: %v", d.id, payload, err)
			continue
		}
		report := []byte(`{"state":{"reported":` + string(delta.State) + `}}`)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.client.Publish(ctx, &paho.Publish{Topic: update, QoS: 1, Payload: report})
		cancel()
		if err != nil {
			select {
			case <-stop: // shutting down
			default:
				t.Errorf("%s: reporting: %v", d.id, err)
			}
			return
		}
	}
}

// TestShadowRollout rolls a change out to 20 simulated devices, 2 per
// batch; dev-07 never reports, so the rollout stops at batch 4 and says so,
// and the devices of batches 5 to 10 are left unchanged.
func TestShadowRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and 20 MQTT clients")
	}
	h := startRealHubFull(t)
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("dev-%02d", i)
		labels := []string{"site=plant-1"}
		if i <= 4 {
			labels = append(labels, "ring=canary")
		}
		startSimDevice(t, h, id, id != "dev-07", labels...)
	}
	startSimDevice(t, h, "elsewhere", true, "site=plant-2")

	stdout, stderr, err := run(t, "", "shadow", "set", "--selector", "site=plant-1",
		"sources.temperature.interval=200ms", "log.level=debug",
		"--batch", "10%", "--pause", "20ms", "--timeout", "2s", "--poll-interval", "20ms")
	if err == nil {
		t.Fatalf("rollout with a silent device succeeded:\n%s", stdout)
	}
	t.Logf("outpost shadow set --selector ...:\n%soutpost: %v", stdout, err)
	for _, want := range []string{"batch 4 of 10 did not converge within 2s", "dev-07 (", "12 device(s) in later batches left unchanged"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "dev-08 (") {
		t.Errorf("error names dev-08, which converged: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "Rolling out ") || !strings.Contains(lines[0], "to 20 devices matching site=plant-1 in 10 batch(es) of up to 2") {
		t.Fatalf("progress (stderr %q):\n%s", stderr, stdout)
	}
	for i, l := range lines[1:4] {
		want := fmt.Sprintf("batch %d/10  dev-%02d, dev-%02d  converged  ", i+1, 2*i+1, 2*i+2)
		if !strings.HasPrefix(l, want) {
			t.Errorf("line %q, want it to start with %q", l, want)
		}
	}
	if !strings.HasPrefix(lines[4], "batch 4/10  dev-07, dev-08  FAILED: dev-07 did not converge  2") {
		t.Errorf("line of the failed batch: %q", lines[4])
	}

	// Converged devices report the values; dev-07 only has them desired;
	// later batches and other sites were never changed.
	for _, id := range []string{"dev-01", "dev-08"} {
		var doc struct {
			State struct{ Reported, Delta map[string]any }
		}
		json.Unmarshal([]byte(mustRun(t, "shadow", "get", id, "-o", "json")), &doc)
		if compactJSON(doc.State.Reported) != `{"log":{"level":"debug"},"sources":{"temperature":{"interval":"200ms"}}}` || doc.State.Delta != nil {
			t.Errorf("%s: reported %v, delta %v", id, doc.State.Reported, doc.State.Delta)
		}
	}
	if desired, _ := desiredOf(t, "dev-07"); desired != `{"log":{"level":"debug"},"sources":{"temperature":{"interval":"200ms"}}}` {
		t.Errorf("dev-07 desired = %s", desired)
	}
	for _, id := range []string{"dev-09", "dev-15", "dev-20", "elsewhere"} {
		if _, _, err := run(t, "", "shadow", "get", id); err == nil || !strings.Contains(err.Error(), "not_found") {
			t.Errorf("%s has a shadow after the stopped rollout (err %v); want none", id, err)
		}
	}

	// -o json: a summary on stdout, progress on stderr.
	stdout, stderr, err = run(t, "", "shadow", "set", "-l", "site=plant-1", "-l", "ring=canary", "log.level=info",
		"--batch", "2", "--timeout", "10s", "--poll-interval", "20ms", "-o", "json")
	if err != nil {
		t.Fatalf("canary rollout: %v\n%s", err, stderr)
	}
	var sum struct {
		Status     string   `json:"status"`
		Devices    int      `json:"devices"`
		BatchSize  int      `json:"batch_size"`
		Converged  []string `json:"converged"`
		NotStarted []string `json:"not_started"`
		Batches    []struct {
			Devices   []string `json:"devices"`
			ElapsedMS *int64   `json:"elapsed_ms"`
		} `json:"batches"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("-o json printed %q: %v", stdout, err)
	}
	if sum.Status != "converged" || sum.Devices != 4 || sum.BatchSize != 2 || len(sum.Batches) != 2 ||
		strings.Join(sum.Converged, ",") != "dev-01,dev-02,dev-03,dev-04" || len(sum.NotStarted) != 0 || sum.Batches[1].ElapsedMS == nil {
		t.Errorf("summary = %s", stdout)
	}
	if strings.Count(stderr, "converged") != 2 {
		t.Errorf("stderr = %q, want one progress line per batch", stderr)
	}
}
