package config

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/protocol"
)

// Source configures one sensor, or one device that yields several readings.
//
// Keys that are absent (zero) take the defaults their comments name;
// WithDefaults returns a copy with them filled in. Single-value sources
// (sim, file, exec with format number) name their points after the source;
// multi-value sources (exec with json_lines, http, system, modbus) name them
// "<name>/<field>".
type Source struct {
	// Name is the sensor name its points carry (key sources[].name): 1 to
	// 128 of A-Z a-z 0-9 - _ . : / and unique within the agent.
	Name string `yaml:"name"`
	// Type is the kind of source (key sources[].type): sim, file, exec,
	// http, system or modbus. Each reads its settings from the key of the
	// same name.
	Type string `yaml:"type"`
	// Interval is how often the source is read (key sources[].interval),
	// at least 10ms. Default 1s.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one read (key sources[].timeout): the exec command is
	// killed, the HTTP request or Modbus request abandoned. At most the
	// interval. Default: the interval.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Report is how the readings are passed on (key sources[].report).
	// Default: each reading as soon as it is read.
	Report Report `yaml:"report,omitempty"`

	// Sim configures a source of type sim (key sources[].sim).
	Sim *Sim `yaml:"sim,omitempty"`
	// File configures a source of type file (key sources[].file).
	File *FileSource `yaml:"file,omitempty"`
	// Exec configures a source of type exec (key sources[].exec).
	Exec *ExecSource `yaml:"exec,omitempty"`
	// HTTP configures a source of type http (key sources[].http).
	HTTP *HTTPSource `yaml:"http,omitempty"`
	// System configures a source of type system (key sources[].system);
	// optional.
	System *SystemSource `yaml:"system,omitempty"`
	// Modbus configures a source of type modbus (key sources[].modbus).
	Modbus *ModbusSource `yaml:"modbus,omitempty"`
}

// Sim configures a simulated sensor.
type Sim struct {
	// Kind is what is simulated (key sources[].sim.kind): "temperature"
	// (°C, about 20 to 25 with slow drift), "humidity" (%, 30 to 70) or
	// "vibration" (mm/s RMS, mostly below 1 with occasional spikes).
	Kind string `yaml:"kind"`
	// Seed makes the simulated values repeatable (key sources[].sim.seed).
	// 0, the default, derives a seed from the device id and sensor name, so
	// different devices produce different but stable series.
	Seed int64 `yaml:"seed,omitempty"`
}

// FileSource configures a source that reads one number from a file, such
// as /sys/class/thermal/thermal_zone0/temp. The value is raw*scale+offset.
type FileSource struct {
	// Path is the file to read (key sources[].file.path), required and
	// absolute. It must hold one number, optionally surrounded by white
	// space; at most 4 KiB are read.
	Path string `yaml:"path"`
	// Scale multiplies the number read (key sources[].file.scale), e.g.
	// 0.001 for millidegrees. Absent or 0 means 1.
	Scale float64 `yaml:"scale,omitempty"`
	// Offset is added after scaling (key sources[].file.offset). Default 0.
	Offset float64 `yaml:"offset,omitempty"`
}

// ExecSource configures a source that runs a command on every read.
type ExecSource struct {
	// Command is the program and its arguments (key
	// sources[].exec.command), required. No shell is involved unless the
	// command names one, e.g. ["sh", "-c", "cat /tmp/x | wc -l"]. A command
	// still running at the source's timeout is killed with its whole process
	// group.
	Command []string `yaml:"command"`
	// Format is how standard output is parsed (key sources[].exec.format):
	// "number" (default), one number, the reading of the source itself; or
	// "json_lines", one JSON object per line,
	// {"sensor": "x", "value": 1.5}, optionally with "ts_unix_ms", each
	// becoming the point "<name>/x". Values may be numbers, strings or
	// booleans. At most 64 KiB of output are read.
	Format string `yaml:"format,omitempty"`
}

// HTTPSource configures a source that polls a JSON endpoint with GET.
type HTTPSource struct {
	// URL is the endpoint (key sources[].http.url), http:// or https://,
	// required. A status other than 2xx fails the read; at most 1 MiB of
	// body is read.
	URL string `yaml:"url"`
	// Headers are sent with every request (key sources[].http.headers),
	// e.g. an Authorization header. Optional.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Fields maps a field name to a JSON pointer (RFC 6901) into the
	// response (key sources[].http.fields), e.g. {temp: /sensors/0/value};
	// each becomes the point "<name>/<field>". At least one is required.
	// The value found must be a number, a string or a boolean.
	Fields map[string]string `yaml:"fields"`
}

// SystemSource configures a source that reads the host's own metrics from
// /proc and /sys. Every key is optional.
type SystemSource struct {
	// Metrics are the groups read (key sources[].system.metrics): any of
	// cpu, load, memory, disk, network and temperature. Default all.
	Metrics []string `yaml:"metrics,omitempty"`
	// Paths are the mount points whose disk use is reported (key
	// sources[].system.paths). Default ["/"].
	Paths []string `yaml:"paths,omitempty"`
	// Interfaces are the network interfaces reported one by one (key
	// sources[].system.interfaces). Default: none; the totals over every
	// interface but loopback are reported instead.
	Interfaces []string `yaml:"interfaces,omitempty"`
}

// ModbusSource configures a source that reads registers of a Modbus TCP
// device.
type ModbusSource struct {
	// URL is the device (key sources[].modbus.url): tcp://host:port,
	// usually port 502. Required.
	URL string `yaml:"url"`
	// UnitID is the unit (slave) id addressed (key sources[].modbus.unit_id),
	// 0 to 255. Default 1.
	UnitID *int `yaml:"unit_id,omitempty"`
	// Registers are what is read (key sources[].modbus.registers); at least
	// one.
	Registers []ModbusRegister `yaml:"registers"`
}

// ModbusRegister is one value read from a Modbus device. Its point is
// "<source name>/<name>" with the value raw*scale+offset.
type ModbusRegister struct {
	// Name is the field name of the point (key ...registers[].name), required.
	Name string `yaml:"name"`
	// Address is the first register, 0 to 65535 (key ...registers[].address).
	Address int `yaml:"address"`
	// Kind is the register table (key ...registers[].kind): holding
	// (default) or input.
	Kind string `yaml:"kind,omitempty"`
	// Type is how the registers are decoded (key ...registers[].type):
	// uint16 (default), int16, uint32, int32 or float32; 32-bit types span
	// two registers.
	Type string `yaml:"type,omitempty"`
	// WordOrder is the order of the two registers of a 32-bit type (key
	// ...registers[].word_order): big (default; high word first) or little.
	WordOrder string `yaml:"word_order,omitempty"`
	// Scale multiplies the decoded value (key ...registers[].scale). Absent
	// or 0 means 1.
	Scale float64 `yaml:"scale,omitempty"`
	// Offset is added after scaling (key ...registers[].offset). Default 0.
	Offset float64 `yaml:"offset,omitempty"`
}

// Report configures how a source's readings are passed on to the spool.
type Report struct {
	// Strategy is one of (key sources[].report.strategy):
	// "realtime" (default), each reading as soon as it is read;
	// "batch", readings held until max_points are held or the first is
	// max_delay old, then passed on together; and
	// "on_change", a reading only when it differs from the last one
	// reported for its sensor by more than the deadband, or max_interval
	// after that last report.
	Strategy string `yaml:"strategy,omitempty"`
	// MaxPoints is how many readings a batch holds at most (key
	// sources[].report.max_points), 1 to 5000. Batch only. Default 100.
	MaxPoints int `yaml:"max_points,omitempty"`
	// MaxDelay is how long the first reading of a batch waits at most
	// (key sources[].report.max_delay), at least 1ms. Batch only. Default 5s.
	MaxDelay Duration `yaml:"max_delay,omitempty"`
	// Deadband is the absolute change a number must exceed to be reported
	// (key sources[].report.deadband), at least 0. On_change only.
	// Default 0: any change.
	Deadband float64 `yaml:"deadband,omitempty"`
	// DeadbandPercent is the change a number must exceed to be reported,
	// in percent of the last reported value's magnitude (key
	// sources[].report.deadband_percent), at least 0. With deadband too,
	// the larger of the two bands applies. On_change only. Default 0.
	DeadbandPercent float64 `yaml:"deadband_percent,omitempty"`
	// MaxInterval is the heartbeat (key sources[].report.max_interval): an
	// unchanged reading is reported anyway at the first read at least this
	// long after the sensor's last report. At least the source's interval.
	// On_change only. Default 5m.
	MaxInterval Duration `yaml:"max_interval,omitempty"`
}

// Collect configures the reading of sources as a whole (key collect).
type Collect struct {
	// MaxConcurrentPolls caps how many sources are read at the same moment
	// (key collect.max_concurrent_polls), 1 to 1024, so that many exec or
	// http sources due together do not start as many processes or requests
	// at once. Default 8.
	MaxConcurrentPolls int `yaml:"max_concurrent_polls"`
}

// The source types Validate accepts.
const (
	SourceTypeSim    = "sim"
	SourceTypeFile   = "file"
	SourceTypeExec   = "exec"
	SourceTypeHTTP   = "http"
	SourceTypeSystem = "system"
	SourceTypeModbus = "modbus"
)

// The simulated kinds Validate accepts.
const (
	SimTemperature = "temperature"
	SimHumidity    = "humidity"
	SimVibration   = "vibration"
)

// The report strategies Validate accepts.
const (
	StrategyRealtime = "realtime"
	StrategyBatch    = "batch"
	StrategyOnChange = "on_change"
)

// The exec output formats Validate accepts.
const (
	ExecFormatNumber    = "number"
	ExecFormatJSONLines = "json_lines"
)

// The system metric groups Validate accepts.
const (
	SystemCPU         = "cpu"
	SystemLoad        = "load"
	SystemMemory      = "memory"
	SystemDisk        = "disk"
	SystemNetwork     = "network"
	SystemTemperature = "temperature"
)

// The Modbus register kinds, types and word orders Validate accepts.
const (
	ModbusHolding = "holding"
	ModbusInput   = "input"

	ModbusUint16  = "uint16"
	ModbusInt16   = "int16"
	ModbusUint32  = "uint32"
	ModbusInt32   = "int32"
	ModbusFloat32 = "float32"

	WordOrderBig    = "big"
	WordOrderLittle = "little"
)

// Defaults and limits of source settings.
const (
	// MinSourceInterval is the shortest interval a source may be read at.
	MinSourceInterval = 10 * time.Millisecond
	// DefaultSourceInterval is the interval of a source that sets none.
	DefaultSourceInterval = time.Second
	// DefaultBatchMaxPoints is report.max_points when absent.
	DefaultBatchMaxPoints = 100
	// DefaultBatchMaxDelay is report.max_delay when absent.
	DefaultBatchMaxDelay = 5 * time.Second
	// DefaultMaxInterval is report.max_interval when absent.
	DefaultMaxInterval = 5 * time.Minute
	// DefaultMaxConcurrentPolls is collect.max_concurrent_polls when absent.
	DefaultMaxConcurrentPolls = 8
	// MaxConcurrentPollsLimit is the largest collect.max_concurrent_polls.
	MaxConcurrentPollsLimit = 1024
	// DefaultModbusUnitID is modbus.unit_id when absent.
	DefaultModbusUnitID = 1
)

// SystemMetrics lists every metric group of a system source, the default.
var SystemMetrics = []string{SystemCPU, SystemLoad, SystemMemory, SystemDisk, SystemNetwork, SystemTemperature}

// sourceTypes lists the types for error messages.
var sourceTypes = []string{SourceTypeSim, SourceTypeFile, SourceTypeExec, SourceTypeHTTP, SourceTypeSystem, SourceTypeModbus}

// DefaultSources returns the sources an agent reads when its configuration
// names none: simulated temperature, humidity and vibration every second.
func DefaultSources() []Source {
	var out []Source
	for _, k := range []string{SimTemperature, SimHumidity, SimVibration} {
		out = append(out, Source{Name: k, Type: SourceTypeSim, Interval: Duration(time.Second), Sim: &Sim{Kind: k}})
	}
	return out
}

// DefaultCollect returns the collect settings used for every key agent.yaml
// leaves out.
func DefaultCollect() Collect {
	return Collect{MaxConcurrentPolls: DefaultMaxConcurrentPolls}
}

// validate reports every problem of the collect settings, each naming its key.
func (c Collect) validate() []error {
	if c.MaxConcurrentPolls < 1 || c.MaxConcurrentPolls > MaxConcurrentPollsLimit {
		return []error{fmt.Errorf("collect.max_concurrent_polls: must be 1 to %d, got %d", MaxConcurrentPollsLimit, c.MaxConcurrentPolls)}
	}
	return nil
}

// WithDefaults returns s with every absent key that has a default filled
// in: interval, timeout, report strategy and its keys, scales of 1, the
// exec format, the system groups and paths, the Modbus unit id, register
// kinds, types and word orders. It does not validate.
func (s Source) WithDefaults() Source {
	if s.Interval == 0 {
		s.Interval = Duration(DefaultSourceInterval)
	}
	if s.Timeout == 0 {
		s.Timeout = s.Interval
	}
	r := &s.Report
	if r.Strategy == "" {
		r.Strategy = StrategyRealtime
	}
	switch r.Strategy {
	case StrategyBatch:
		if r.MaxPoints == 0 {
			r.MaxPoints = DefaultBatchMaxPoints
		}
		if r.MaxDelay == 0 {
			r.MaxDelay = Duration(DefaultBatchMaxDelay)
		}
	case StrategyOnChange:
		if r.MaxInterval == 0 {
			r.MaxInterval = Duration(DefaultMaxInterval)
		}
	}
	if s.File != nil {
		f := *s.File
		if f.Scale == 0 {
			f.Scale = 1
		}
		s.File = &f
	}
	if s.Exec != nil {
		e := *s.Exec
		if e.Format == "" {
			e.Format = ExecFormatNumber
		}
		s.Exec = &e
	}
	if s.Type == SourceTypeSystem {
		sys := SystemSource{}
		if s.System != nil {
			sys = *s.System
		}
		if len(sys.Metrics) == 0 {
			sys.Metrics = slices.Clone(SystemMetrics)
		}
		if len(sys.Paths) == 0 {
			sys.Paths = []string{"/"}
		}
		s.System = &sys
	}
	if s.Modbus != nil {
		m := *s.Modbus
		if m.UnitID == nil {
			id := DefaultModbusUnitID
			m.UnitID = &id
		}
		m.Registers = slices.Clone(m.Registers)
		for i := range m.Registers {
			reg := &m.Registers[i]
			if reg.Kind == "" {
				reg.Kind = ModbusHolding
			}
			if reg.Type == "" {
				reg.Type = ModbusUint16
			}
			if reg.WordOrder == "" && (reg.Type == ModbusUint32 || reg.Type == ModbusInt32 || reg.Type == ModbusFloat32) {
				reg.WordOrder = WordOrderBig
			}
			if reg.Scale == 0 {
				reg.Scale = 1
			}
		}
		s.Modbus = &m
	}
	return s
}

// DiskSensor returns the field name of the disk use of the mount point
// path in a system source: "disk_used_percent:<path>".
func DiskSensor(path string) string { return "disk_used_percent:" + path }

// validateSources reports every problem of the sources list, each naming its key.
func validateSources(sources []Source) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := make(map[string]bool, len(sources))
	for i, raw := range sources {
		key := fmt.Sprintf("sources[%d]", i)
		nameErr := protocol.ValidSensorName(raw.Name)
		nameOK := nameErr == nil
		if err := nameErr; err != nil {
			add("%s.name: %w", key, err)
		} else if seen[raw.Name] {
			add("%s.name: %q is used by another source", key, raw.Name)
		}
		seen[raw.Name] = true
		s := raw.WithDefaults()
		if s.Interval.D() < MinSourceInterval {
			add("%s.interval: must be at least %s, got %s", key, MinSourceInterval, s.Interval)
		}
		if raw.Timeout < 0 || s.Timeout > s.Interval {
			add("%s.timeout: must be positive and at most the interval (%s), got %s", key, s.Interval, raw.Timeout)
		}
		errs = append(errs, validateReport(key+".report", s.Report, s.Interval)...)

		// field checks that a field name makes a valid sensor name with the
		// source's name; skipped when the source's name itself is bad.
		field := func(fkey, f string) {
			if f == "" {
				add("%s: missing", fkey)
				return
			}
			if !nameOK {
				return
			}
			if err := protocol.ValidSensorName(raw.Name + "/" + f); err != nil {
				add("%s: %q does not make a valid sensor name %q: %w", fkey, f, raw.Name+"/"+f, err)
			}
		}

		blocks := []struct {
			typ string
			set bool
		}{
			{SourceTypeSim, raw.Sim != nil}, {SourceTypeFile, raw.File != nil}, {SourceTypeExec, raw.Exec != nil},
			{SourceTypeHTTP, raw.HTTP != nil}, {SourceTypeSystem, raw.System != nil}, {SourceTypeModbus, raw.Modbus != nil},
		}
		for _, b := range blocks {
			if b.set && b.typ != s.Type && slices.Contains(sourceTypes, s.Type) {
				add("%s.%s: set, but the type is %q; remove it or change the type", key, b.typ, s.Type)
			}
		}

		switch s.Type {
		case SourceTypeSim:
			if s.Sim == nil {
				add("%s.sim: missing; a sim source needs e.g. sim: {kind: temperature}", key)
				break
			}
			switch s.Sim.Kind {
			case SimTemperature, SimHumidity, SimVibration:
			default:
				add("%s.sim.kind: must be %s, %s or %s, got %q", key, SimTemperature, SimHumidity, SimVibration, s.Sim.Kind)
			}
		case SourceTypeFile:
			if s.File == nil {
				add("%s.file: missing; a file source needs e.g. file: {path: /sys/class/thermal/thermal_zone0/temp}", key)
				break
			}
			if s.File.Path == "" {
				add("%s.file.path: missing", key)
			} else if !strings.HasPrefix(s.File.Path, "/") {
				add("%s.file.path: must be absolute, got %q", key, s.File.Path)
			}
			if !finite(s.File.Scale) {
				add("%s.file.scale: must be a finite number, got %v", key, s.File.Scale)
			}
			if !finite(s.File.Offset) {
				add("%s.file.offset: must be a finite number, got %v", key, s.File.Offset)
			}
		case SourceTypeExec:
			if s.Exec == nil {
				add("%s.exec: missing; an exec source needs e.g. exec: {command: [/usr/bin/sensors-read]}", key)
				break
			}
			if len(s.Exec.Command) == 0 || s.Exec.Command[0] == "" {
				add("%s.exec.command: missing; write the program and its arguments as a list", key)
			}
			if s.Exec.Format != ExecFormatNumber && s.Exec.Format != ExecFormatJSONLines {
				add("%s.exec.format: must be %s or %s, got %q", key, ExecFormatNumber, ExecFormatJSONLines, s.Exec.Format)
			}
		case SourceTypeHTTP:
			if s.HTTP == nil {
				add("%s.http: missing; an http source needs e.g. http: {url: http://127.0.0.1/status, fields: {temp: /temp}}", key)
				break
			}
			if s.HTTP.URL == "" {
				add("%s.http.url: missing", key)
			} else if err := checkURL(s.HTTP.URL, "http", "https"); err != nil {
				add("%s.http.url: %w", key, err)
			}
			for _, h := range sortedKeys(s.HTTP.Headers) {
				if !validHeaderName(h) {
					add("%s.http.headers: %q is not a valid header name", key, h)
				}
				if strings.ContainsAny(s.HTTP.Headers[h], "\r\n") {
					add("%s.http.headers.%s: the value must not contain a line break", key, h)
				}
			}
			if len(s.HTTP.Fields) == 0 {
				add("%s.http.fields: missing; map each field name to a JSON pointer, e.g. {temp: /sensors/0/value}", key)
			}
			for _, f := range sortedKeys(s.HTTP.Fields) {
				field(fmt.Sprintf("%s.http.fields.%s", key, f), f)
				if p := s.HTTP.Fields[f]; p != "" && !strings.HasPrefix(p, "/") {
					add("%s.http.fields.%s: %q is not a JSON pointer; it must be empty or start with /", key, f, p)
				}
			}
		case SourceTypeSystem:
			for j, m := range s.System.Metrics {
				if !slices.Contains(SystemMetrics, m) {
					add("%s.system.metrics[%d]: unknown metric group %q; known are %s", key, j, m, strings.Join(SystemMetrics, ", "))
				}
			}
			for j, p := range s.System.Paths {
				if !strings.HasPrefix(p, "/") {
					add("%s.system.paths[%d]: must be an absolute path, got %q", key, j, p)
					continue
				}
				field(fmt.Sprintf("%s.system.paths[%d]", key, j), DiskSensor(p))
			}
			for j, n := range s.System.Interfaces {
				field(fmt.Sprintf("%s.system.interfaces[%d]", key, j), "net_rx_bytes:"+n)
			}
		case SourceTypeModbus:
			if s.Modbus == nil {
				add("%s.modbus: missing; a modbus source needs e.g. modbus: {url: tcp://10.0.0.5:502, registers: [{name: flow, address: 0}]}", key)
				break
			}
			errs = append(errs, validateModbus(key+".modbus", *s.Modbus, field)...)
		case "":
			add("%s.type: missing; must be one of %s", key, strings.Join(sourceTypes, ", "))
		default:
			add("%s.type: unknown type %q; must be one of %s", key, s.Type, strings.Join(sourceTypes, ", "))
		}
	}
	return errs
}

// validateReport reports the problems of one source's report settings;
// key is the key of the report block and interval the source's.
func validateReport(key string, r Report, interval Duration) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	batchKeys := r.MaxPoints != 0 || r.MaxDelay != 0
	changeKeys := r.Deadband != 0 || r.DeadbandPercent != 0 || r.MaxInterval != 0
	switch r.Strategy {
	case StrategyRealtime:
		if batchKeys || changeKeys {
			add("%s: max_points, max_delay, deadband, deadband_percent and max_interval do not apply to strategy %s", key, r.Strategy)
		}
	case StrategyBatch:
		if changeKeys {
			add("%s: deadband, deadband_percent and max_interval apply to strategy %s only", key, StrategyOnChange)
		}
		if r.MaxPoints < 1 || r.MaxPoints > protocol.MaxPointsPerBatch {
			add("%s.max_points: must be 1 to %d, got %d", key, protocol.MaxPointsPerBatch, r.MaxPoints)
		}
		if r.MaxDelay < Duration(time.Millisecond) {
			add("%s.max_delay: must be at least 1ms, got %s", key, r.MaxDelay)
		}
	case StrategyOnChange:
		if batchKeys {
			add("%s: max_points and max_delay apply to strategy %s only", key, StrategyBatch)
		}
		if r.Deadband < 0 || !finite(r.Deadband) {
			add("%s.deadband: must be a number of at least 0, got %v", key, r.Deadband)
		}
		if r.DeadbandPercent < 0 || !finite(r.DeadbandPercent) {
			add("%s.deadband_percent: must be a number of at least 0, got %v", key, r.DeadbandPercent)
		}
		if r.MaxInterval < interval {
			add("%s.max_interval: must be at least the source's interval (%s), got %s", key, interval, r.MaxInterval)
		}
	default:
		add("%s.strategy: must be %s, %s or %s, got %q", key, StrategyRealtime, StrategyBatch, StrategyOnChange, r.Strategy)
	}
	return errs
}

// validateModbus reports the problems of a modbus block (defaults applied).
func validateModbus(key string, m ModbusSource, field func(key, f string)) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.URL == "" {
		add("%s.url: missing; write e.g. tcp://10.0.0.5:502", key)
	} else if u, err := url.Parse(m.URL); err != nil || u.Scheme != "tcp" || u.Hostname() == "" || u.Port() == "" {
		add("%s.url: %q must be tcp://host:port, e.g. tcp://10.0.0.5:502", key, m.URL)
	}
	if *m.UnitID < 0 || *m.UnitID > 255 {
		add("%s.unit_id: must be 0 to 255, got %d", key, *m.UnitID)
	}
	if len(m.Registers) == 0 {
		add("%s.registers: missing; list at least one, e.g. [{name: flow, address: 0}]", key)
	}
	names := map[string]bool{}
	for j, r := range m.Registers {
		rkey := fmt.Sprintf("%s.registers[%d]", key, j)
		field(rkey+".name", r.Name)
		if r.Name != "" && names[r.Name] {
			add("%s.name: %q is used by another register", rkey, r.Name)
		}
		names[r.Name] = true
		if r.Kind != ModbusHolding && r.Kind != ModbusInput {
			add("%s.kind: must be %s or %s, got %q", rkey, ModbusHolding, ModbusInput, r.Kind)
		}
		words := 1
		switch r.Type {
		case ModbusUint16, ModbusInt16:
			if r.WordOrder != "" {
				add("%s.word_order: applies to 32-bit types only, but the type is %s", rkey, r.Type)
			}
		case ModbusUint32, ModbusInt32, ModbusFloat32:
			words = 2
			if r.WordOrder != WordOrderBig && r.WordOrder != WordOrderLittle {
				add("%s.word_order: must be %s or %s, got %q", rkey, WordOrderBig, WordOrderLittle, r.WordOrder)
			}
		default:
			add("%s.type: must be %s, %s, %s, %s or %s, got %q", rkey, ModbusUint16, ModbusInt16, ModbusUint32, ModbusInt32, ModbusFloat32, r.Type)
		}
		if r.Address < 0 || r.Address+words-1 > math.MaxUint16 {
			add("%s.address: must be 0 to %d for type %s, got %d", rkey, math.MaxUint16+1-words, r.Type, r.Address)
		}
		if !finite(r.Scale) {
			add("%s.scale: must be a finite number, got %v", rkey, r.Scale)
		}
		if !finite(r.Offset) {
			add("%s.offset: must be a finite number, got %v", rkey, r.Offset)
		}
	}
	return errs
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// validHeaderName reports whether h is an HTTP header field name (an RFC 9110 token).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
