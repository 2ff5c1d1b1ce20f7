package shadow

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/config"
)

func testConfig() config.Config {
	c := config.Default()
	c.DeviceID = "pump-7"
	return c
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResolveAppliesEveryKey(t *testing.T) {
	cfg := testConfig()
	base := Baseline(cfg, slog.LevelInfo)
	desired := decode(t, `{"log_level":"debug","telemetry":{"qos":0},"app":{"threshold":3,"mode":"eco"},
		"spool":{"max_bytes":"32MiB","max_age":"24h","overflow":"block"},
		"sources":{"temperature":{"interval":"200ms","enabled":false,
			"report":{"strategy":"on_change","deadband":0.5,"deadband_percent":2,"max_interval":"1m"}},
			"humidity":{"report":{"strategy":"batch","max_points":10,"max_delay":"2s"}}}}`)
	res := Resolve(cfg, base, base, desired)
	if len(res.Errors) != 0 {
		t.Fatalf("errors = %v", res.Errors)
	}
	s := res.Settings
	if s.LogLevel != slog.LevelDebug || s.QoS != 0 || s.SpoolMaxBytes != 32<<20 || s.SpoolMaxAge.D() != 24*time.Hour || s.SpoolOverflow != "block" {
		t.Errorf("settings = %+v", s)
	}
	temp := *s.Sources["temperature"]
	want := SourceSettings{Interval: config.Duration(200 * time.Millisecond), Enabled: false,
		Report: config.Report{Strategy: "on_change", Deadband: 0.5, DeadbandPercent: 2, MaxInterval: config.Duration(time.Minute)}}
	if temp != want {
		t.Errorf("temperature = %+v, want %+v", temp, want)
	}
	hum := *s.Sources["humidity"]
	if hum.Report != (config.Report{Strategy: "batch", MaxPoints: 10, MaxDelay: config.Duration(2 * time.Second)}) || !hum.Enabled {
		t.Errorf("humidity = %+v", hum)
	}
	if *s.Sources["vibration"] != *base.Sources["vibration"] {
		t.Errorf("vibration changed: %+v", s.Sources["vibration"])
	}
	if len(res.Applied) != 14 {
		t.Errorf("applied = %v, want 14 keys", res.Applied)
	}

	// Reported echoes desired and carries the version; errors are absent.
	rep := Reported(res, 7)
	if rep[KeyVersion] != float64(7) || rep[KeyErrors] != nil {
		t.Errorf("reported = %v", rep)
	}
	src := rep["sources"].(map[string]any)["temperature"].(map[string]any)
	if src["interval"] != "200ms" || src["enabled"] != false || src["report"].(map[string]any)["deadband"] != 0.5 {
		t.Errorf("reported temperature = %v", src)
	}
}

func TestResolveRefusesBadValues(t *testing.T) {
	cfg := testConfig()
	base := Baseline(cfg, slog.LevelInfo)
	prev := base.Clone()
	prev.Sources["temperature"].Interval = config.Duration(500 * time.Millisecond)
	prev.QoS = 2
	tests := []struct {
		name, desired, key, wantErr string
		check                       func(t *testing.T, s Settings)
	}{
		{"negative interval", `{"sources":{"temperature":{"interval":"-1s","enabled":false}}}`, "sources.temperature.interval",
			"must be at least 10ms, got -1s", func(t *testing.T, s Settings) {
				// The previous interval keeps running; enabled still applies.
				if s.Sources["temperature"].Interval.D() != 500*time.Millisecond || s.Sources["temperature"].Enabled {
					t.Errorf("temperature = %+v", s.Sources["temperature"])
				}
			}},
		{"interval not a string", `{"sources":{"temperature":{"interval":5}}}`, "sources.temperature.interval", `must be a duration such as "500ms" or "1m", got 5`, nil},
		{"interval not a duration", `{"sources":{"temperature":{"interval":"fast"}}}`, "sources.temperature.interval", `"fast" is not a duration; write e.g. 500ms, 30s or 2m`, nil},
		{"unknown top key", `{"colour":"red"}`, "colour", "unknown key", nil},
		{"unknown source", `{"sources":{"pressure":{"interval":"1s"}}}`, "sources.pressure", "no source of this name in agent.yaml; the shadow changes the sources agent.yaml configures", nil},
		{"unknown source key", `{"sources":{"temperature":{"colour":1}}}`, "sources.temperature.colour", "unknown key; the shadow can change interval, enabled and report", nil},
		{"enabled not bool", `{"sources":{"temperature":{"enabled":"no"}}}`, "sources.temperature.enabled", `must be true or false, got "no"`, nil},
		{"qos out of range", `{"telemetry":{"qos":3}}`, "telemetry.qos", "must be 0, 1 or 2, got 3", func(t *testing.T, s Settings) {
			if s.QoS != 2 {
				t.Errorf("qos = %d, want the previous 2", s.QoS)
			}
		}},
		{"qos fraction", `{"telemetry":{"qos":0.5}}`, "telemetry.qos", "must be 0, 1 or 2, got 0.5", nil},
		{"telemetry other key", `{"telemetry":{"drain_rate":5}}`, "telemetry.drain_rate", "unknown key; the shadow can change telemetry.qos only", nil},
		{"spool too small", `{"spool":{"max_bytes":"10B"}}`, "spool.max_bytes", "must be at least 1KiB, got 10", nil},
		{"spool size garbage", `{"spool":{"max_bytes":"lots"}}`, "spool.max_bytes", `"lots" is not a size; write a number of bytes or e.g. 512KiB, 64MiB, 1GiB`, nil},
		{"spool overflow", `{"spool":{"overflow":"explode"}}`, "spool.overflow", `must be drop_oldest or block, got "explode"`, nil},
		{"spool max age", `{"spool":{"max_age":"10ms"}}`, "spool.max_age", "must be 0 (no limit) or at least 1s, got 10ms", nil},
		{"log level", `{"log_level":"loud"}`, "log_level", `must be debug, info, warn or error, got "loud"`, nil},
		{"strategy", `{"sources":{"temperature":{"report":{"strategy":"sometimes"}}}}`, "sources.temperature.report.strategy", `must be realtime, batch or on_change, got "sometimes"`, nil},
		{"deadband negative", `{"sources":{"temperature":{"report":{"strategy":"on_change","deadband":-1}}}}`, "sources.temperature.report.deadband", "must be a number of at least 0, got -1", nil},
		{"max interval below interval", `{"sources":{"temperature":{"interval":"2s","report":{"strategy":"on_change","max_interval":"1s"}}}}`, "sources.temperature.report.max_interval", "must be at least the source's interval (2s), got 1s", nil},
		{"param of other strategy", `{"sources":{"temperature":{"report":{"max_points":5}}}}`, "sources.temperature.report.max_points", "max_points, max_delay, deadband, deadband_percent and max_interval do not apply to strategy realtime", nil},
		{"sources not object", `{"sources":[1]}`, "sources", "must be an object, got an array", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Resolve(cfg, base, prev, decode(t, tt.desired))
			if got := res.Errors[tt.key]; got != tt.wantErr {
				t.Errorf("errors[%s] = %q, want %q (all: %v)", tt.key, got, tt.wantErr, res.Errors)
			}
			if _, ok := res.Applied[tt.key]; ok {
				t.Errorf("%s applied", tt.key)
			}
			if tt.check != nil {
				tt.check(t, res.Settings)
			}
			rep := Reported(res, 3)
			if errs, _ := rep[KeyErrors].(map[string]any); errs[tt.key] != tt.wantErr {
				t.Errorf("reported errors = %v", rep[KeyErrors])
			}
		})
	}
}

func TestResolveOmittedKeysReturnToAgentYAML(t *testing.T) {
	cfg := testConfig()
	base := Baseline(cfg, slog.LevelWarn)
	first := Resolve(cfg, base, base, decode(t, `{"log_level":"debug","sources":{"temperature":{"interval":"100ms"}}}`))
	second := Resolve(cfg, base, first.Settings, decode(t, `{}`))
	if !second.Settings.Equal(base) {
		t.Errorf("settings = %+v, want agent.yaml's", second.Settings)
	}
}

func TestMergePatchClearsFixedErrors(t *testing.T) {
	cfg := testConfig()
	base := Baseline(cfg, slog.LevelInfo)
	bad := Resolve(cfg, base, base, decode(t, `{"sources":{"temperature":{"interval":"-1s"}}}`))
	good := Resolve(cfg, base, bad.Settings, decode(t, `{"sources":{"temperature":{"interval":"2s"}}}`))
	old, cur := Reported(bad, 4), Reported(good, 5)
	patch := MergePatch(old, cur)
	if v, ok := patch[KeyErrors]; !ok || v != nil {
		t.Errorf("patch %s = %v, want null", KeyErrors, patch[KeyErrors])
	}
	// Applying the patch to the old report gives the new one.
	if got := Merge(cloneValue(old).(map[string]any), patch); !reflect.DeepEqual(got, cur) {
		t.Errorf("merge(old, patch) = %v, want %v", got, cur)
	}
	if p := MergePatch(cur, cur); len(p) != 0 {
		t.Errorf("patch of equal documents = %v", p)
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, err := Load(path)
	if err != nil || st.Version != 0 || st.Desired != nil {
		t.Fatalf("Load of a missing file = %+v, %v", st, err)
	}
	want := State{Version: 9, Desired: decode(t, `{"sources":{"temperature":{"interval":"200ms"}},"telemetry":{"qos":0}}`)}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("Load of a broken file succeeded")
	}
}
