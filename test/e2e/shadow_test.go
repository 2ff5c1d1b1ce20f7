package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/testutil"
)

// mqttDevice holds what the mosquitto clients need to act as one device
// on one of its shadows.
type mqttDevice struct {
	id     string
	conn   []string // -h -p -V -q -i -u -P
	prefix string   // shadow topic prefix, ending in "/"
}

func (h *hubProc) mosquittoDevice(t *testing.T, id string) mqttDevice {
	t.Helper()
	token, _ := h.addDevice(t, id)
	password := h.joinHTTP(t, token)
	host, port, _ := strings.Cut(h.mqtt, ":")
	return mqttDevice{id: id, prefix: "$aws/things/" + id + "/shadow/",
		conn: []string{"-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", id, "-u", id, "-P", password}}
}

// named returns d acting on its named shadow.
func (d mqttDevice) named(name string) mqttDevice {
	d.prefix = "$aws/things/" + d.id + "/shadow/name/" + name + "/"
	return d
}

func (d mqttDevice) topic(op string) string { return d.prefix + op }

// rr sends a shadow request with mosquitto_rr and returns the decoded
// answer that arrives on op/result ("accepted" or "rejected"); the request
// fails the test if that answer does not come within 10 s. payloadArgs are
// mosquitto_rr's message options (-m JSON, -n, -f FILE).
func rr(t *testing.T, tool string, d mqttDevice, op, result string, payloadArgs ...string) map[string]any {
	t.Helper()
	args := append(append([]string{}, d.conn...), "-t", d.topic(op), "-e", d.topic(op+"/"+result), "-W", "10")
	out, _ := run(t, nil, "", true, tool, append(args, payloadArgs...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil {
		t.Fatalf("mosquitto_rr %s → %s printed %q: %v", op, result, out, err)
	}
	return m
}

// metricSample returns the value of one sample of the hub's /metrics.
func (h *hubProc) metricSample(t *testing.T, sample string) string {
	t.Helper()
	resp, err := http.Get(h.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v
		}
	}
	return ""
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// shadowGet runs "outpost shadow get -o json" and decodes the document.
func (h *hubProc) shadowGet(t *testing.T, id string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(h.cli(t, "shadow", "get", id, "-o", "json")), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestShadowMosquitto: a third-party MQTT client (mosquitto_pub, _sub and
// _rr) uses the AWS IoT shadow topics with plain JSON, and an operator
// uses the outpost CLI, against the real hub binary.
func TestShadowMosquitto(t *testing.T) {
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	rrTool := needTool(t, "mosquitto_rr", "mosquitto-clients")
	h := startHub(t)
	d := h.mosquittoDevice(t, "thermo-3p")

	// The device reports with a plain publish; the operator sees it.
	run(t, nil, "", true, pub, append(d.conn, "-t", d.topic("update"), "-m",
		`{"state":{"reported":{"sources":{"temperature":{"interval":"1s"}},"firmware":"2.1"}},"clientToken":"boot"}`)...)
	// The hub handles the request after its PUBACK, so wait for it.
	var doc map[string]any
	testutil.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin.outpost, "shadow", "get", d.id, "-o", "json")
		cmd.Env = append(os.Environ(), h.env...)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("shadow get: %v", err)
		}
		return json.Unmarshal(out, &doc)
	})
	if jsonOf(doc["state"]) != `{"reported":{"firmware":"2.1","sources":{"temperature":{"interval":"1s"}}}}` || jsonOf(doc["version"]) != "1" {
		t.Fatalf("shadow after the device's report: %s", jsonOf(doc))
	}

	// get over MQTT echoes the client token.
	got := rr(t, rrTool, d, "get", "accepted", "-m", `{"clientToken":"g-1"}`)
	if got["clientToken"] != "g-1" || jsonOf(got["version"]) != "1" || jsonOf(got["state"]) != jsonOf(doc["state"]) {
		t.Errorf("get/accepted = %s", jsonOf(got))
	}

	// The operator sets a desired value while the device is offline; its
	// persistent session (mosquitto_sub -c) receives the delta on return.
	session := append(append([]string{}, d.conn...), "-c", "-x", "120", "-t", d.topic("update/delta"))
	run(t, nil, "", true, sub, append(session, "-E")...)
	out := h.cli(t, "shadow", "set", d.id, "sources.temperature.interval=200ms", "log.level=debug")
	if !strings.Contains(out, "shadow version 2") {
		t.Errorf("shadow set printed:\n%s", out)
	}
	out, _ = run(t, nil, "", true, sub, append(session, "-C", "1", "-W", "10")...)
	var delta map[string]any
	if err := json.Unmarshal([]byte(out), &delta); err != nil {
		t.Fatalf("mosquitto_sub printed %q: %v", out, err)
	}
	if jsonOf(delta["state"]) != `{"log":{"level":"debug"},"sources":{"temperature":{"interval":"200ms"}}}` || jsonOf(delta["version"]) != "2" {
		t.Errorf("delta = %s", jsonOf(delta))
	}
	if meta, _ := delta["metadata"].(map[string]any); meta == nil || !strings.Contains(jsonOf(meta), `"timestamp":`) {
		t.Errorf("delta metadata = %s", jsonOf(delta["metadata"]))
	}

	// Refusals, each on update/rejected with the documented body.
	for _, tc := range []struct {
		name    string
		payload []string
		code    string
		message string
		token   string
	}{
		{"stale version", []string{"-m", `{"state":{"reported":{"log":{"level":"debug"}}},"version":1,"clientToken":"late"}`}, "409", "Version conflict", "late"},
		{"malformed", []string{"-m", `{"state":{"reported":`}, "400", "Invalid JSON", ""},
		{"no state", []string{"-m", `{"clientToken":"x"}`}, "400", "Missing required node: state", "x"},
		{"state over 64 KiB", []string{"-m", `{"state":{"reported":{"blob":"` + strings.Repeat("x", 70<<10) + `"}},"clientToken":"big"}`},
			"413", "The payload exceeds the maximum size allowed", "big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rr(t, rrTool, d, "update", "rejected", tc.payload...)
			if jsonOf(got["code"]) != tc.code || got["message"] != tc.message {
				t.Errorf("rejected = %s, want code %s, message %q", jsonOf(got), tc.code, tc.message)
			}
			if tok, _ := got["clientToken"].(string); tok != tc.token {
				t.Errorf("clientToken = %q, want %q", tok, tc.token)
			}
			if _, ok := got["timestamp"]; !ok {
				t.Errorf("no timestamp in %s", jsonOf(got))
			}
		})
	}

	// A request over 128 KiB (too long for a command line, and mosquitto_rr
	// 2.0 sends -f files empty, so mosquitto_pub -f sends it) is refused
	// too; the hub counts it.
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`{"state":{"reported":{"blob":"`+strings.Repeat("x", 130<<10)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "", true, pub, append(d.conn, "-t", d.topic("update"), "-f", big)...)
	testutil.Eventually(t, 10*time.Second, func() error {
		if m := h.metricSample(t, `outpost_shadow_rejected_total{code="413",op="update"}`); m != "2" {
			return fmt.Errorf("413 rejections counted: %q, want 2", m)
		}
		return nil
	})

	// The device applies the change with the current version.
	got = rr(t, rrTool, d, "update", "accepted", "-m",
		`{"state":{"reported":{"sources":{"temperature":{"interval":"200ms"}},"log":{"level":"debug"}}},"version":2,"clientToken":"applied"}`)
	if jsonOf(got["version"]) != "3" || got["clientToken"] != "applied" || !strings.Contains(jsonOf(got["metadata"]), `"reported":{"log":{"level":{"timestamp":`) {
		t.Errorf("update/accepted = %s", jsonOf(got))
	}
	table := h.cli(t, "shadow", "get", d.id)
	for _, want := range []string{"Shadow of thermo-3p, version 3", "sources.temperature.interval", "in sync", "firmware"} {
		if !strings.Contains(table, want) {
			t.Errorf("shadow get lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "pending") {
		t.Errorf("shadow get still shows a pending key:\n%s", table)
	}
	if s := h.shadowGet(t, d.id)["state"].(map[string]any); s["delta"] != nil {
		t.Errorf("delta after the device applied it: %s", jsonOf(s))
	}

	// delete, then get fails on both sides; the next update continues the version.
	got = rr(t, rrTool, d, "delete", "accepted", "-n")
	if jsonOf(got["version"]) != "3" {
		t.Errorf("delete/accepted = %s", jsonOf(got))
	}
	got = rr(t, rrTool, d, "get", "rejected", "-n")
	if jsonOf(got["code"]) != "404" || got["message"] != "No shadow exists with name: 'thermo-3p'" {
		t.Errorf("get/rejected after delete = %s", jsonOf(got))
	}
	_, stderr := run(t, h.env, "", false, bin.outpost, "shadow", "get", d.id)
	if !strings.Contains(stderr, "No shadow exists") {
		t.Errorf("shadow get after delete: stderr %q", stderr)
	}
	got = rr(t, rrTool, d, "update", "accepted", "-m", `{"state":{"reported":{"firmware":"2.2"}}}`)
	if jsonOf(got["version"]) != "4" {
		t.Errorf("update after delete = %s, want version 4", jsonOf(got))
	}

	// Named shadows have topics of their own.
	got = rr(t, rrTool, d.named("config"), "update", "accepted", "-m", `{"state":{"desired":{"mode":"eco"}}}`)
	if jsonOf(got["version"]) != "1" {
		t.Errorf("named update/accepted = %s", jsonOf(got))
	}
	if got = rr(t, rrTool, d, "get", "accepted", "-n"); jsonOf(got["state"]) != `{"reported":{"firmware":"2.2"}}` {
		t.Errorf("the classic shadow after a named update: %s", jsonOf(got))
	}
	if out := h.cli(t, "shadow", "get", d.id, "--name", "config", "-o", "json"); !strings.Contains(out, `"mode": "eco"`) {
		t.Errorf("named shadow over the CLI:\n%s", out)
	}
	h.proc.stop(t)
}
