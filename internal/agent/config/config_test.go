package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := Default()
	c.DeviceID = "pump-7"
	c.HubURL = "http://127.0.0.1:8080"
	c.MQTT.Password = "secret"
	return c
}

func TestDefaultWithDeviceIDIsValid(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "device_id: missing") {
		t.Fatalf("Default().Validate() = %v, want a missing device_id", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.DeviceID = "-bad"
	c.HubURL = "ftp://hub"
	c.MQTT.URL = "http://broker:1883"
	c.MQTT.KeepAlive = Duration(1500 * time.Millisecond)
	c.MQTT.BackoffMin = Duration(2 * time.Second)
	c.MQTT.BackoffMax = Duration(time.Second)
	c.Telemetry.QoS = 3
	c.Telemetry.BatchMaxPoints = 0
	c.Telemetry.DrainRate = -1
	c.Telemetry.StatusInterval = 0
	c.Spool.CommitPoints = 0
	c.Spool.Overflow = "discard"
	c.Sources = []Source{
		{Name: "temp", Type: "sim", Interval: Duration(time.Second), Sim: &Sim{Kind: "pressure"}},
		{Name: "temp", Type: "zigbee", Interval: Duration(time.Millisecond)},
		{Name: "bad name", Type: "sim", Interval: Duration(time.Second)},
	}
	c.HTTP.Listen = "0.0.0.0:9100"

	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, want := range []string{
		"device_id:", "hub_url:", "mqtt.url:", "mqtt.keepalive:", "mqtt.backoff_max:",
		"telemetry.qos:", "telemetry.batch_max_points:", "telemetry.drain_rate:", "telemetry.status_interval:",
		"spool.commit_points:", "spool.overflow:",
		"sources[0].sim.kind:", "sources[1].name: \"temp\" is used", "sources[1].interval:", "sources[1].type: unknown type \"zigbee\"",
		"sources[2].name:", "sources[2].sim: missing", "http.listen:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() error lacks %q; got:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 18 {
		t.Errorf("Validate() reported %d problems, want 18:\n%v", n, err)
	}
}

func TestValidateFields(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" means valid
	}{
		{"tls url", func(c *Config) { c.MQTT.URL = "tls://hub.example.com:8883" }, ""},
		{"url without port", func(c *Config) { c.MQTT.URL = "mqtt://hub.example.com" }, "has no port"},
		{"empty hub url is fine", func(c *Config) { c.HubURL = "" }, ""},
		{"loopback v6", func(c *Config) { c.HTTP.Listen = "[::1]:9100" }, ""},
		{"localhost", func(c *Config) { c.HTTP.Listen = "localhost:9100" }, ""},
		{"all interfaces", func(c *Config) { c.HTTP.Listen = ":9100" }, "not a loopback"},
		{"lan address", func(c *Config) { c.HTTP.Listen = "192.168.1.5:9100" }, "not a loopback"},
		{"qos 0", func(c *Config) { c.Telemetry.QoS = 0 }, ""},
		{"qos 2", func(c *Config) { c.Telemetry.QoS = 2 }, ""},
		{"too many points", func(c *Config) { c.Telemetry.BatchMaxPoints = 5001 }, "batch_max_points"},
		{"no sources", func(c *Config) { c.Sources = []Source{} }, ""},
		{"keepalive too long", func(c *Config) { c.MQTT.KeepAlive = Duration(65536 * time.Second) }, "mqtt.keepalive"},
		{"coap url", func(c *Config) { c.OTA.CoAPURL = "coap://hub.example.com:5683" }, ""},
		{"coap url v6", func(c *Config) { c.OTA.CoAPURL = "coap://[fd00::1]:5683/" }, ""},
		{"coaps url", func(c *Config) { c.OTA.CoAPURL = "coaps://hub.example.com:5684" }, "ota.coap_url"},
		{"coap url without port", func(c *Config) { c.OTA.CoAPURL = "coap://hub.example.com" }, "ota.coap_url"},
		{"coap url with path", func(c *Config) { c.OTA.CoAPURL = "coap://hub.example.com:5683/tuf" }, "ota.coap_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	c := validConfig()
	c.MQTT.URL = "tls://hub.example.com:8883"
	c.Spool.CommitInterval = Duration(250 * time.Millisecond)
	c.Spool.MaxBytes = 3 << 20
	c.Sources = []Source{{Name: "line1/pressure", Type: "sim", Interval: Duration(100 * time.Millisecond), Sim: &Sim{Kind: "humidity", Seed: 42}}}
	c.HTTP.Listen = "127.0.0.1:9100"
	if err := c.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %o, want 600", mode)
	}
	raw, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(raw), "# outpost-agent configuration") || !strings.Contains(string(raw), "commit_interval: 250ms") || !strings.Contains(string(raw), "max_bytes: 3MiB") {
		t.Errorf("saved file lacks the header or readable durations:\n%s", raw)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip changed the config:\n got %+v\nwant %+v", got, c)
	}

	// Overwriting keeps the mode and leaves no temporary file behind.
	c.DeviceID = "pump-8"
	if err := c.Save(path); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after Save, want 1", len(entries))
	}
	if got, err := Load(path); err != nil || got.DeviceID != "pump-8" {
		t.Errorf("Load after overwrite = %q, %v", got.DeviceID, err)
	}
}

func TestParse(t *testing.T) {
	t.Run("defaults fill missing keys", func(t *testing.T) {
		c, err := Parse([]byte("device_id: pump-7\nmqtt:\n  password: x\n"))
		if err != nil {
			t.Fatal(err)
		}
		want := Default()
		want.DeviceID, want.MQTT.Password = "pump-7", "x"
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("explicit empty sources", func(t *testing.T) {
		c, err := Parse([]byte("device_id: pump-7\nsources: []\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Sources) != 0 {
			t.Errorf("sources = %+v, want none", c.Sources)
		}
	})
	t.Run("source interval defaults to 1s", func(t *testing.T) {
		c, err := Parse([]byte("sources:\n  - {name: t, type: sim, sim: {kind: temperature}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Sources) != 1 || c.Sources[0].Interval.D() != time.Second {
			t.Errorf("sources = %+v", c.Sources)
		}
	})
	for _, tt := range []struct{ name, in, want string }{
		{"unknown key", "device_id: a\nmqtt:\n  passwd: x\n", "field passwd not found"},
		{"bare number duration", "mqtt:\n  keepalive: 30\n", "not a duration"},
		{"not yaml", "device_id: [\n", "parsing YAML"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadValidatesAndAppliesEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("device_id: pump-7\ntelemetry:\n  qos: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "telemetry.qos") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load() = %v, want an invalid telemetry.qos naming the file", err)
	}

	if err := os.WriteFile(path, []byte("device_id: pump-7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_AGENT_MQTT_URL", "mqtt://10.0.0.1:1884")
	t.Setenv("OUTPOST_AGENT_DEVICE_ID", "pump-9")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.URL != "mqtt://10.0.0.1:1884" || c.DeviceID != "pump-9" || c.MQTTUsername() != "pump-9" {
		t.Errorf("env not applied: %+v", c)
	}

	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
}
