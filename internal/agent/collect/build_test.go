package collect

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/internal/agent/report"
	"github.com/outpost-edge/outpost/internal/testutil"
)

const everySourceYAML = `
device_id: pump-7
sources:
  - {name: temperature, type: sim, sim: {kind: temperature}}
  - name: cpu_temp
    type: file
    interval: 10s
    file: {path: %[1]s, scale: 0.001}
    report: {strategy: on_change, deadband: 0.5, max_interval: 1m}
  - name: probe
    type: exec
    interval: 2s
    timeout: 500ms
    exec: {command: [sh, -c, "echo 1"]}
    report: {strategy: batch, max_points: 10}
  - name: gateway
    type: http
    http: {url: "http://127.0.0.1:8081/status", fields: {temp: /temp}}
  - {name: host, type: system}
  - name: pump
    type: modbus
    modbus:
      url: tcp://127.0.0.1:502
      registers: [{name: flow, address: 0, type: float32}]
`

func TestFromConfigBuildsEveryType(t *testing.T) {
	cfg, err := config.Parse(fmt.Appendf(nil, everySourceYAML, "/sys/class/thermal/thermal_zone0/temp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	inputs, err := FromConfig(cfg.DeviceID, cfg.Sources)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range inputs {
		got = append(got, fmt.Sprintf("%s %T %s/%s %T", in.Name, in.Source, in.Interval, in.Timeout, in.Strategy))
	}
	want := []string{
		"temperature *collect.Sim 1s/1s report.Realtime",
		"cpu_temp *collect.File 10s/10s *report.OnChange",
		"probe *collect.Exec 2s/500ms *report.Batch",
		"gateway *collect.HTTP 1s/1s report.Realtime",
		"host *collect.System 1s/1s report.Realtime",
		"pump *collect.Modbus 1s/1s report.Realtime",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inputs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := FromConfig("d", []config.Source{{Name: "x", Type: "zigbee"}, {Name: "y", Type: "file"}}); err == nil ||
		!strings.Contains(err.Error(), "source x: unknown type") || !strings.Contains(err.Error(), "source y: type file needs") {
		t.Errorf("FromConfig of bad sources = %v, want both named", err)
	}
}

// TestFileOnChangeEndToEnd runs a file source with on_change through the
// collector: only the changes of the file beyond the deadband are appended.
func TestFileOnChangeEndToEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "level")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("100")
	inputs, err := FromConfig("d", []config.Source{{
		Name: "level", Type: "file", Interval: config.Duration(time.Millisecond),
		File:   &config.FileSource{Path: path},
		Report: config.Report{Strategy: "on_change", Deadband: 5, MaxInterval: config.Duration(time.Hour)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := inputs[0].Strategy.(*report.OnChange); !ok {
		t.Fatalf("strategy = %T", inputs[0].Strategy)
	}
	sink := &recordingSink{}
	c, err := New(inputs, sink, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	waitFor := func(want string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() error {
			if got := fmt.Sprint(describePoints(sink.all())); got != want {
				return fmt.Errorf("appended %s, want %s", got, want)
			}
			return nil
		})
	}
	waitFor("[level=100]")
	write("104") // within the band
	write("106") // beyond it
	waitFor("[level=100 level=106]")
	write("103")
	write("100.5")
	waitFor("[level=100 level=106 level=100.5]")
	stop()
}
