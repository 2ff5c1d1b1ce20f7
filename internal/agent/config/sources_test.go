package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const allSourcesYAML = `
device_id: pump-7
sources:
  - {name: temperature, type: sim, sim: {kind: temperature}}
  - name: cpu_temp
    type: file
    interval: 10s
    file: {path: /sys/class/thermal/thermal_zone0/temp, scale: 0.001}
    report: {strategy: on_change, deadband: 0.5, deadband_percent: 2, max_interval: 5m}
  - name: probe
    type: exec
    interval: 30s
    timeout: 5s
    exec: {command: [sh, -c, "read-probe --json"], format: json_lines}
    report: {strategy: batch, max_points: 50, max_delay: 2m}
  - name: gateway
    type: http
    http:
      url: http://127.0.0.1:8081/status
      headers: {Authorization: Bearer x}
      fields: {temp: /sensors/0/value, ok: /ok}
  - name: host
    type: system
    interval: 15s
    system: {metrics: [cpu, memory, disk], paths: [/, /var/lib], interfaces: [eth0]}
  - name: pump
    type: modbus
    modbus:
      url: tcp://10.0.0.5:502
      unit_id: 0
      registers:
        - {name: flow, address: 0, type: float32, word_order: little}
        - {name: state, address: 10, kind: input, scale: 0.1, offset: -40}
`

func TestSourcesParseAndValidate(t *testing.T) {
	c, err := Parse([]byte(allSourcesYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(c.Sources) != 6 {
		t.Fatalf("%d sources, want 6", len(c.Sources))
	}
	pump := c.Sources[5].WithDefaults().Modbus
	if *pump.UnitID != 0 {
		t.Errorf("unit_id: 0 became %d", *pump.UnitID)
	}
	want := []ModbusRegister{
		{Name: "flow", Address: 0, Kind: "holding", Type: "float32", WordOrder: "little", Scale: 1},
		{Name: "state", Address: 10, Kind: "input", Type: "uint16", Scale: 0.1, Offset: -40},
	}
	if !reflect.DeepEqual(pump.Registers, want) {
		t.Errorf("registers with defaults = %+v\nwant %+v", pump.Registers, want)
	}
	if c.Sources[5].Modbus.Registers[0].Kind != "" {
		t.Error("WithDefaults changed the original's registers")
	}
}

func TestSourceWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Source
		want Source
	}{
		{"interval, timeout and strategy",
			Source{Name: "s", Type: "sim"},
			Source{Name: "s", Type: "sim", Interval: Duration(time.Second), Timeout: Duration(time.Second), Report: Report{Strategy: "realtime"}}},
		{"timeout follows the interval",
			Source{Interval: Duration(time.Minute), Report: Report{Strategy: "batch"}},
			Source{Interval: Duration(time.Minute), Timeout: Duration(time.Minute), Report: Report{Strategy: "batch", MaxPoints: 100, MaxDelay: Duration(5 * time.Second)}}},
		{"on_change heartbeat",
			Source{Interval: Duration(time.Second), Report: Report{Strategy: "on_change", Deadband: 1}},
			Source{Interval: Duration(time.Second), Timeout: Duration(time.Second), Report: Report{Strategy: "on_change", Deadband: 1, MaxInterval: Duration(5 * time.Minute)}}},
		{"file scale",
			Source{Interval: Duration(time.Second), File: &FileSource{Path: "/x"}},
			Source{Interval: Duration(time.Second), Timeout: Duration(time.Second), Report: Report{Strategy: "realtime"}, File: &FileSource{Path: "/x", Scale: 1}}},
		{"exec format",
			Source{Interval: Duration(time.Second), Exec: &ExecSource{Command: []string{"x"}}},
			Source{Interval: Duration(time.Second), Timeout: Duration(time.Second), Report: Report{Strategy: "realtime"}, Exec: &ExecSource{Command: []string{"x"}, Format: "number"}}},
		{"system without a block",
			Source{Type: "system", Interval: Duration(time.Second)},
			Source{Type: "system", Interval: Duration(time.Second), Timeout: Duration(time.Second), Report: Report{Strategy: "realtime"},
				System: &SystemSource{Metrics: SystemMetrics, Paths: []string{"/"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestValidateSourcesListsEveryProblem(t *testing.T) {
	one := 1
	bad := 300
	sources := []Source{
		{Name: "f", Type: "file", File: &FileSource{Path: "relative", Scale: math.Inf(1)}, Timeout: Duration(2 * time.Second)},
		{Name: "e", Type: "exec", Exec: &ExecSource{Format: "xml"}, Report: Report{Strategy: "sometimes"}},
		{Name: "h", Type: "http", HTTP: &HTTPSource{URL: "ftp://x", Headers: map[string]string{"Bad Header": "v", "X-Ok": "a\nb"}, Fields: map[string]string{"t": "temp", "bad field": "/x"}}},
		{Name: "sys", Type: "system", System: &SystemSource{Metrics: []string{"gpu"}, Paths: []string{"var", "/with space"}}},
		{Name: "m", Type: "modbus", Modbus: &ModbusSource{URL: "tcp://plc", UnitID: &bad, Registers: []ModbusRegister{
			{Name: "a", Address: 70000, Kind: "coil", Type: "float64"},
			{Name: "a", Address: 65535, Type: "int32", WordOrder: "middle"},
			{Name: "", Type: "uint16", WordOrder: "big"},
		}}},
		{Name: "m2", Type: "modbus"},
		{Name: "b", Type: "batch_me", Report: Report{Strategy: "batch", MaxPoints: 6000, MaxDelay: Duration(-1), Deadband: 1}},
		{Name: "oc", Type: "sim", Sim: &Sim{Kind: "humidity"}, File: &FileSource{Path: "/x"},
			Report: Report{Strategy: "on_change", Deadband: -1, DeadbandPercent: math.NaN(), MaxInterval: Duration(time.Millisecond), MaxPoints: 3}},
		{Name: "rt", Type: "sim", Sim: &Sim{Kind: "humidity"}, Report: Report{Deadband: 1}},
		{Name: "http2", Type: "http", HTTP: &HTTPSource{URL: "http://x/y"}},
		{Name: "mb_ok", Type: "modbus", Modbus: &ModbusSource{URL: "tcp://plc:502", UnitID: &one, Registers: []ModbusRegister{{Name: "x"}}}},
	}
	var msgs []string
	for _, err := range validateSources(sources) {
		msgs = append(msgs, err.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"sources[0].timeout: must be positive and at most the interval (1s), got 2s",
		"sources[0].file.path: must be absolute",
		"sources[0].file.scale: must be a finite number",
		"sources[1].report.strategy: must be realtime, batch or on_change",
		"sources[1].exec.command: missing",
		"sources[1].exec.format: must be number or json_lines",
		"sources[2].http.url:",
		`sources[2].http.headers: "Bad Header" is not a valid header name`,
		"sources[2].http.headers.X-Ok: the value must not contain a line break",
		`sources[2].http.fields.bad field: "bad field" does not make a valid sensor name`,
		`sources[2].http.fields.t: "temp" is not a JSON pointer`,
		`sources[3].system.metrics[0]: unknown metric group "gpu"`,
		"sources[3].system.paths[0]: must be an absolute path",
		"sources[3].system.paths[1]:",
		`sources[4].modbus.url: "tcp://plc" must be tcp://host:port`,
		"sources[4].modbus.unit_id: must be 0 to 255, got 300",
		"sources[4].modbus.registers[0].kind:",
		"sources[4].modbus.registers[0].type:",
		"sources[4].modbus.registers[0].address:",
		`sources[4].modbus.registers[1].name: "a" is used by another register`,
		"sources[4].modbus.registers[1].word_order: must be big or little",
		"sources[4].modbus.registers[1].address: must be 0 to 65534 for type int32",
		"sources[4].modbus.registers[2].name: missing",
		"sources[4].modbus.registers[2].word_order: applies to 32-bit types only",
		"sources[5].modbus: missing",
		"sources[6].type: unknown type \"batch_me\"",
		"sources[6].report: deadband, deadband_percent and max_interval apply to strategy on_change only",
		"sources[6].report.max_points: must be 1 to 5000, got 6000",
		"sources[6].report.max_delay: must be at least 1ms",
		`sources[7].file: set, but the type is "sim"`,
		"sources[7].report: max_points and max_delay apply to strategy batch only",
		"sources[7].report.deadband: must be a number of at least 0",
		"sources[7].report.deadband_percent: must be a number of at least 0",
		"sources[7].report.max_interval: must be at least the source's interval (1s), got 1ms",
		"sources[8].report: max_points, max_delay, deadband, deadband_percent and max_interval do not apply to strategy realtime",
		"sources[9].http.fields: missing",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q", want)
		}
	}
	if len(msgs) != 36 || strings.Contains(all, "sources[10]") {
		t.Errorf("%d problems, want 36 and none for sources[10]:\n%s", len(msgs), all)
	}
}

func TestCollectSettings(t *testing.T) {
	if err := DefaultCollect().validate(); err != nil {
		t.Errorf("default collect settings: %v", err)
	}
	if DefaultCollect().MaxConcurrentPolls != 8 {
		t.Errorf("default max_concurrent_polls = %d, want 8", DefaultCollect().MaxConcurrentPolls)
	}
	for _, n := range []int{0, -1, 1025} {
		errs := Collect{MaxConcurrentPolls: n}.validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "collect.max_concurrent_polls: must be 1 to 1024") {
			t.Errorf("max_concurrent_polls %d: %v", n, errs)
		}
	}
}
