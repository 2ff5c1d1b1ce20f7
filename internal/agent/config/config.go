package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/protocol"
)

// FileName is the name of the configuration file inside the agent's data directory.
const FileName = "agent.yaml"

// MaxFileBytes is the largest configuration file Load reads.
const MaxFileBytes = 1 << 20

// Config is the whole configuration of one agent: the keys of agent.yaml.
// Durations are Go duration strings such as "500ms", "30s" or "2m".
type Config struct {
	// DeviceID is this device's id (key device_id), as registered on the hub.
	// It is the MQTT client id and, by default, the MQTT username. Required:
	// 1 to 64 of A-Z a-z 0-9 - _ . and not starting with - or .
	DeviceID string `yaml:"device_id"`
	// HubURL is the base URL of the hub's HTTP API (key hub_url), e.g.
	// http://127.0.0.1:8080. Optional; when set it must be http:// or https://.
	HubURL string `yaml:"hub_url,omitempty"`
	// MQTT is how the agent connects to the hub's MQTT broker (key mqtt).
	MQTT MQTT `yaml:"mqtt"`
	// Telemetry is how readings are batched and published (key telemetry).
	Telemetry Telemetry `yaml:"telemetry"`
	// Sources are the sensors the agent reads (key sources). When the key is
	// absent the agent reads three simulated sensors (temperature, humidity
	// and vibration, every second); an empty list means no sensors.
	Sources []Source `yaml:"sources"`
	// Spool is the durable on-disk queue between sources and the uplink (key spool).
	Spool Spool `yaml:"spool"`
	// Collect configures the reading of sources as a whole (key collect).
	Collect Collect `yaml:"collect"`
	// HTTP is the optional local HTTP server for /healthz and /metrics (key http).
	HTTP HTTP `yaml:"http"`
	// OTA configures over-the-air updates (key ota).
	OTA OTA `yaml:"ota,omitempty"`
	// Workloads configures the services the hub deploys (key workloads).
	Workloads Workloads `yaml:"workloads"`
	// API is the local API for edge apps (key api).
	API API `yaml:"api"`
}

// MQTT configures the connection to the broker.
type MQTT struct {
	// URL is the broker address (key mqtt.url): mqtt://host:port for plain
	// TCP or tls://host:port for TLS checked against the system's roots.
	// Default mqtt://127.0.0.1:1883.
	URL string `yaml:"url"`
	// Username is the MQTT username (key mqtt.username). Empty means the
	// device id, which is what the hub expects.
	Username string `yaml:"username,omitempty"`
	// Password is the MQTT password (key mqtt.password) that
	// `outpost-agent join` received from the hub. Empty sends none.
	Password string `yaml:"password,omitempty"`
	// KeepAlive is the MQTT keepalive (key mqtt.keepalive): how long the link
	// may stay silent before a ping; a dead link is noticed after about 1.5
	// times this. 1s to 65535s, whole seconds. Default 30s.
	KeepAlive Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt, TCP, TLS and CONNACK
	// together (key mqtt.connect_timeout). Default 10s.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// BackoffMin is the first reconnect delay ceiling (key mqtt.backoff_min).
	// Reconnect delays grow exponentially from it up to BackoffMax with full
	// jitter (each delay is random between 0 and the current ceiling), so a
	// fleet does not reconnect in lockstep after a broker restart. Default 1s.
	BackoffMin Duration `yaml:"backoff_min"`
	// BackoffMax is the largest reconnect delay (key mqtt.backoff_max);
	// at least BackoffMin. Default 60s.
	BackoffMax Duration `yaml:"backoff_max"`
}

// Telemetry configures how the points in the spool are published.
type Telemetry struct {
	// QoS is the MQTT QoS of telemetry publishes (key telemetry.qos): 0, 1 or
	// 2. With 1 or 2 a batch leaves the spool only once the broker has
	// acknowledged it (PUBACK, or PUBCOMP at 2); a batch the lost connection
	// left unacknowledged is sent again after reconnecting. 0 may lose
	// points: a batch is deleted from the spool as soon as it is written to
	// the connection, so whatever the link drops on the way is gone.
	// Default 1.
	QoS int `yaml:"qos"`
	// BatchMaxPoints is the most points in one published batch (key
	// telemetry.batch_max_points), 1 to 5000. Batches are also kept under
	// the 256 KiB payload limit. Default 500.
	BatchMaxPoints int `yaml:"batch_max_points"`
	// DrainRate limits how fast the backlog, the points that waited in the
	// spool while the broker was unreachable, is published after a
	// (re)connect, in points per second (key telemetry.drain_rate), so that
	// a fleet coming back at once does not flatten the hub. New points are
	// published as they arrive meanwhile, not held behind the backlog. 0
	// means no limit. Default 5000.
	DrainRate float64 `yaml:"drain_rate"`
	// StatusInterval is how often the agent refreshes its retained online
	// status, which carries the spool's depth, drops and backlog age (key
	// telemetry.status_interval), at least 1s. It is also sent on every
	// connect. Default 30s.
	StatusInterval Duration `yaml:"status_interval"`
	// Compression is how batches are compressed on the wire (key
	// telemetry.compression): "none" or "zstd". zstd makes a typical batch
	// about 60 % smaller again (docs/protocol.md) for a little CPU; the hub
	// recognises compressed payloads by themselves. Default none.
	Compression string `yaml:"compression"`
}

// The telemetry compressions.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// Telemetry defaults.
const (
	DefaultBatchMaxPointsPublish = 500
	DefaultDrainRate             = 5000
	DefaultStatusInterval        = 30 * time.Second
)

// HTTP configures the local HTTP server.
type HTTP struct {
	// Listen is the address of the local HTTP server serving /healthz and
	// /metrics (key http.listen), e.g. 127.0.0.1:9100. Empty, the default,
	// turns it off. Only loopback addresses are accepted: the endpoints have
	// no authentication.
	Listen string `yaml:"listen"`
}

// Default returns the configuration used for every key agent.yaml leaves
// out. It has no device id, so it does not validate on its own.
func Default() Config {
	return Config{
		MQTT: MQTT{
			URL:            "mqtt://127.0.0.1:1883",
			KeepAlive:      Duration(30 * time.Second),
			ConnectTimeout: Duration(10 * time.Second),
			BackoffMin:     Duration(time.Second),
			BackoffMax:     Duration(60 * time.Second),
		},
		Telemetry: Telemetry{
			QoS:            1,
			BatchMaxPoints: DefaultBatchMaxPointsPublish,
			DrainRate:      DefaultDrainRate,
			StatusInterval: Duration(DefaultStatusInterval),
			Compression:    CompressionNone,
		},
		Sources:   DefaultSources(),
		Spool:     DefaultSpool(),
		Collect:   DefaultCollect(),
		Workloads: DefaultWorkloads(),
		API:       DefaultAPI(),
	}
}

// MQTTUsername returns the username to connect with: MQTT.Username, or the
// device id when that is empty.
func (c Config) MQTTUsername() string {
	if c.MQTT.Username != "" {
		return c.MQTT.Username
	}
	return c.DeviceID
}

// Validate reports every problem of c at once, joined with errors.Join;
// each names the key it is about.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.DeviceID == "" {
		add("device_id: missing; run `outpost-agent join` or set it")
	} else if err := protocol.ValidDeviceID(c.DeviceID); err != nil {
		add("device_id: %w", err)
	}
	if c.HubURL != "" {
		if err := checkURL(c.HubURL, "http", "https"); err != nil {
			add("hub_url: %w", err)
		}
	}

	m := c.MQTT
	if m.URL == "" {
		add("mqtt.url: missing")
	} else if err := checkURL(m.URL, "mqtt", "tls"); err != nil {
		add("mqtt.url: %w", err)
	} else if u, _ := url.Parse(m.URL); u.Port() == "" {
		add("mqtt.url: %q has no port (e.g. mqtt://host:1883 or tls://host:8883)", m.URL)
	}
	if m.KeepAlive.D() < time.Second || m.KeepAlive.D() > 65535*time.Second || m.KeepAlive.D()%time.Second != 0 {
		add("mqtt.keepalive: must be whole seconds from 1s to 65535s, got %s", m.KeepAlive)
	}
	if m.ConnectTimeout <= 0 {
		add("mqtt.connect_timeout: must be positive, got %s", m.ConnectTimeout)
	}
	if m.BackoffMin < Duration(time.Millisecond) {
		add("mqtt.backoff_min: must be at least 1ms, got %s", m.BackoffMin)
	}
	if m.BackoffMax < m.BackoffMin {
		add("mqtt.backoff_max: must be at least mqtt.backoff_min (%s), got %s", m.BackoffMin, m.BackoffMax)
	}

	t := c.Telemetry
	if t.QoS < 0 || t.QoS > 2 {
		add("telemetry.qos: must be 0, 1 or 2, got %d", t.QoS)
	}
	if t.BatchMaxPoints < 1 || t.BatchMaxPoints > protocol.MaxPointsPerBatch {
		add("telemetry.batch_max_points: must be 1 to %d, got %d", protocol.MaxPointsPerBatch, t.BatchMaxPoints)
	}
	if t.DrainRate < 0 || math.IsNaN(t.DrainRate) || math.IsInf(t.DrainRate, 0) {
		add("telemetry.drain_rate: must be 0 (no limit) or a positive number of points per second, got %v", t.DrainRate)
	}
	if t.StatusInterval.D() < time.Second {
		add("telemetry.status_interval: must be at least 1s, got %s", t.StatusInterval)
	}
	switch t.Compression {
	case CompressionNone, CompressionZstd:
	default:
		add("telemetry.compression: must be %q or %q, got %q", CompressionNone, CompressionZstd, t.Compression)
	}

	for _, err := range validateSources(c.Sources) {
		errs = append(errs, err)
	}
	errs = append(errs, c.Collect.validate()...)
	for _, err := range c.Spool.validate() {
		errs = append(errs, err)
	}
	errs = append(errs, c.OTA.validate()...)
	if c.Workloads.Enabled {
		errs = append(errs, c.Workloads.validate()...)
	}

	errs = append(errs, c.API.validate()...)
	if c.HTTP.Listen != "" {
		if err := checkLoopback(c.HTTP.Listen); err != nil {
			add("http.listen: %w", err)
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			if u.Host == "" {
				return fmt.Errorf("%q has no host", raw)
			}
			return nil
		}
	}
	return fmt.Errorf("%q must start with %s://", raw, strings.Join(schemes, ":// or "))
}

func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address; use e.g. 127.0.0.1:9100 (the endpoints have no authentication)", addr)
}

// Parse decodes agent.yaml content over Default(). Unknown keys are errors,
// so that a misspelt key is not silently ignored. It does not validate.
func Parse(data []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parsing YAML: %w", err)
	}
	for i := range c.Sources {
		if c.Sources[i].Interval == 0 {
			c.Sources[i].Interval = Duration(time.Second)
		}
	}
	return c, nil
}

// The environment variables ApplyEnv reads, each overriding one key.
var envKeys = []struct {
	name string
	set  func(*Config, string)
}{
	{"OUTPOST_AGENT_DEVICE_ID", func(c *Config, v string) { c.DeviceID = v }},
	{"OUTPOST_AGENT_HUB_URL", func(c *Config, v string) { c.HubURL = v }},
	{"OUTPOST_AGENT_MQTT_URL", func(c *Config, v string) { c.MQTT.URL = v }},
	{"OUTPOST_AGENT_MQTT_USERNAME", func(c *Config, v string) { c.MQTT.Username = v }},
	{"OUTPOST_AGENT_MQTT_PASSWORD", func(c *Config, v string) { c.MQTT.Password = v }},
	{"OUTPOST_AGENT_HTTP_LISTEN", func(c *Config, v string) { c.HTTP.Listen = v }},
	{"OUTPOST_AGENT_API_LISTEN", func(c *Config, v string) { c.API.Listen = v }},
}

// ApplyEnv overrides keys from the environment variables
// OUTPOST_AGENT_DEVICE_ID, _HUB_URL, _MQTT_URL, _MQTT_USERNAME,
// _MQTT_PASSWORD, _HTTP_LISTEN and _API_LISTEN; lookup is os.LookupEnv or a fake. A
// variable that is set, even to "", overrides.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	for _, k := range envKeys {
		if v, ok := lookup(k.name); ok {
			k.set(c, v)
		}
	}
}

// Load reads the configuration at path: defaults, then the file, then the
// OUTPOST_AGENT_* environment variables; and validates the result.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("reading config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return Config{}, fmt.Errorf("reading config %s: larger than %d bytes", path, MaxFileBytes)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("reading config %s: %w", path, err)
	}
	c.ApplyEnv(os.LookupEnv)
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid config %s:\n%w", path, err)
	}
	return c, nil
}

const header = `# outpost-agent configuration. It holds the MQTT password: keep it private (mode 0600).
# Every key and its default is described in docs/agent.md; durations are Go
# duration strings such as 500ms, 30s or 2m.
`

// Save writes c to path with mode 0600, atomically: it writes a temporary
// file in the same directory, syncs it and renames it over path, so a crash
// leaves either the old file or the new one.
func (c Config) Save(path string) error {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("saving config: %w", err)
	}
	return nil
}
