package config

import (
	"strings"
	"testing"
	"time"
)

func TestSpoolAndTelemetryDefaults(t *testing.T) {
	c := Default()
	want := Spool{
		CommitInterval: Duration(2 * time.Millisecond),
		CommitPoints:   1000,
		MaxBytes:       64 << 20,
		MaxAge:         Duration(168 * time.Hour),
		Overflow:       OverflowDropOldest,
	}
	if c.Spool != want {
		t.Errorf("spool defaults = %+v, want %+v", c.Spool, want)
	}
	tel := c.Telemetry
	if tel.QoS != 1 || tel.BatchMaxPoints != 500 || tel.DrainRate != 5000 || tel.StatusInterval.D() != 30*time.Second {
		t.Errorf("telemetry defaults = %+v", tel)
	}
}

func TestValidateSpoolAndTelemetry(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" means valid
	}{
		{"commit at once", func(c *Config) { c.Spool.CommitInterval = 0 }, ""},
		{"negative interval", func(c *Config) { c.Spool.CommitInterval = Duration(-time.Millisecond) }, "spool.commit_interval"},
		{"interval too long", func(c *Config) { c.Spool.CommitInterval = Duration(2 * time.Second) }, "spool.commit_interval"},
		{"one point commits", func(c *Config) { c.Spool.CommitPoints = 1 }, ""},
		{"too many commit points", func(c *Config) { c.Spool.CommitPoints = 100_001 }, "spool.commit_points"},
		{"tiny spool", func(c *Config) { c.Spool.MaxBytes = 1024 }, ""},
		{"spool too small", func(c *Config) { c.Spool.MaxBytes = 1023 }, "spool.max_bytes"},
		{"no age limit", func(c *Config) { c.Spool.MaxAge = 0 }, ""},
		{"age too short", func(c *Config) { c.Spool.MaxAge = Duration(500 * time.Millisecond) }, "spool.max_age"},
		{"block", func(c *Config) { c.Spool.Overflow = OverflowBlock }, ""},
		{"empty overflow", func(c *Config) { c.Spool.Overflow = "" }, "spool.overflow"},
		{"custom path", func(c *Config) { c.Spool.Path = "/var/spool/outpost.db" }, ""},
		{"unlimited drain", func(c *Config) { c.Telemetry.DrainRate = 0 }, ""},
		{"slow drain", func(c *Config) { c.Telemetry.DrainRate = 0.5 }, ""},
		{"negative drain", func(c *Config) { c.Telemetry.DrainRate = -5 }, "telemetry.drain_rate"},
		{"status too often", func(c *Config) { c.Telemetry.StatusInterval = Duration(100 * time.Millisecond) }, "telemetry.status_interval"},
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

func TestParseSpool(t *testing.T) {
	c, err := Parse([]byte("device_id: pump-7\nspool:\n  max_bytes: 16384\n  max_age: 1h\n  overflow: block\n  commit_interval: 0s\ntelemetry:\n  drain_rate: 250\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spool.MaxBytes != 16384 || c.Spool.MaxAge.D() != time.Hour || c.Spool.Overflow != OverflowBlock ||
		c.Spool.CommitInterval != 0 || c.Spool.CommitPoints != DefaultSpoolCommitPoints || c.Telemetry.DrainRate != 250 {
		t.Errorf("parsed = %+v %+v", c.Spool, c.Telemetry)
	}

	// Keys that do not exist are refused, so a misspelt one is not
	// silently ignored.
	if _, err := Parse([]byte("device_id: pump-7\ntelemetry:\n  batch_max_delay: 1s\n")); err == nil {
		t.Error("Parse accepted the unknown key telemetry.batch_max_delay")
	}
	if _, err := Parse([]byte("spool:\n  max_bytes: lots\n")); err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Errorf("Parse(max_bytes: lots) = %v, want a size error", err)
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
	}{
		{"0", 0}, {"65536", 65536}, {"64MiB", 64 << 20}, {"512 KiB", 512 << 10}, {"1GiB", 1 << 30},
		{"500kB", 500_000}, {"2MB", 2_000_000}, {"100B", 100},
	} {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5MiB", "MiB", "12 parsecs", "99999999999GiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) = nil error", bad)
		}
	}
	for _, tt := range []struct {
		in   ByteSize
		want string
	}{{64 << 20, "64MiB"}, {1 << 30, "1GiB"}, {16 << 10, "16KiB"}, {1000, "1000"}, {0, "0"}} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if back, err := ParseByteSize(tt.in.String()); err != nil || back != tt.in {
			t.Errorf("round trip of %d = %d, %v", int64(tt.in), back, err)
		}
	}
}
