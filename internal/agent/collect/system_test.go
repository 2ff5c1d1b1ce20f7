package collect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/config"
)

func TestSystemOnThisHost(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc on this host")
	}
	s, err := NewSystem("host", config.SystemSource{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Collect(context.Background(), time.Now())
	if err != nil {
		t.Fatalf("first read: %v", err)
	}
	if v := values(first); len(v) == 0 {
		t.Fatal("first read returned nothing")
	} else if _, ok := v["host/cpu_percent"]; ok {
		t.Error("first read has a cpu_percent, but there is no previous read to compare with")
	}
	// Burn some CPU so that the second read has ticks to compare.
	var second []*outpostv1.Point
	deadline := time.Now().Add(5 * time.Second)
	for {
		for x := 0; x < 1e6; x++ {
			_ = x * x
		}
		if second, err = s.Collect(context.Background(), time.Now()); err != nil {
			t.Fatalf("read: %v", err)
		}
		if _, ok := values(second)["host/cpu_percent"]; ok || time.Now().After(deadline) {
			break
		}
	}
	v := values(second)
	for _, c := range []struct {
		name   string
		lo, hi float64
	}{
		{"host/cpu_percent", 0, 100},
		{"host/load1", 0, 10000},
		{"host/load5", 0, 10000},
		{"host/load15", 0, 10000},
		{"host/mem_total_bytes", 16 << 20, 1 << 50},
		{"host/mem_available_bytes", 1, 1 << 50},
		{"host/mem_used_bytes", 1, 1 << 50},
		{"host/mem_used_percent", 0, 100},
		{"host/disk_used_percent:/", 0, 100},
		{"host/net_rx_bytes", 0, 1 << 62},
		{"host/net_tx_bytes", 0, 1 << 62},
	} {
		got, ok := v[c.name]
		if !ok {
			t.Errorf("%s missing; got %v", c.name, v)
			continue
		}
		if got < c.lo || got > c.hi {
			t.Errorf("%s = %v, want %v to %v", c.name, got, c.lo, c.hi)
		}
	}
	if v["host/mem_used_bytes"]+v["host/mem_available_bytes"] != v["host/mem_total_bytes"] {
		t.Errorf("memory: used + available != total: %v", v)
	}
	for name, temp := range v {
		if strings.HasPrefix(name, "host/temp_celsius:") && (temp < -40 || temp > 150) {
			t.Errorf("%s = %v °C", name, temp)
		}
	}
}

func TestSystemFromFakeTree(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(user, idle, iowait uint64) string {
		return fmt.Sprintf("cpu  %d 0 0 %d %d 0 0 0 0 0\ncpu0 1 2 3 4\n", user, idle, iowait)
	}
	write("proc/stat", stat(100, 800, 100))
	write("proc/loadavg", "0.50 0.25 0.10 1/100 4242\n")
	write("proc/meminfo", "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n")
	write("proc/net/dev", `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0
 wlan0:     500       5    0    0    0     0          0         0      700       7    0    0    0     0       0          0
`)
	write("sys/class/thermal/thermal_zone0/temp", "45500\n")
	write("sys/class/thermal/thermal_zone1/temp", "garbage\n") // skipped

	s, err := NewSystem("sys", config.SystemSource{Metrics: []string{"cpu", "load", "memory", "network", "temperature"}})
	if err != nil {
		t.Fatal(err)
	}
	s.procDir, s.sysDir = filepath.Join(root, "proc"), filepath.Join(root, "sys")
	if _, err := s.Collect(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	// 1000 more ticks, 300 of them busy (user), 700 idle or iowait.
	write("proc/stat", stat(400, 1300, 300))
	pts, err := s.Collect(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"sys/cpu_percent": 30, "sys/load1": 0.5, "sys/load5": 0.25, "sys/load15": 0.1,
		"sys/mem_total_bytes": 1024000, "sys/mem_available_bytes": 256000, "sys/mem_used_bytes": 768000, "sys/mem_used_percent": 75,
		"sys/net_rx_bytes": 2500, "sys/net_tx_bytes": 3700, "sys/temp_celsius:thermal_zone0": 45.5,
	}
	if got := values(pts); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}

	s.interfaces = []string{"eth0", "ppp0"}
	s.metrics = []string{"network"}
	pts, err = s.Collect(context.Background(), time.Now())
	if got := fmt.Sprint(values(pts)); got != "map[sys/net_rx_bytes:eth0:2000 sys/net_tx_bytes:eth0:3000]" {
		t.Errorf("per interface: %v", got)
	}
	if err == nil || !strings.Contains(err.Error(), "no interface ppp0") {
		t.Errorf("err = %v, want ppp0 missing", err)
	}

	s.metrics = []string{"disk", "load"}
	s.paths = []string{"/nonexistent/mount"}
	pts, err = s.Collect(context.Background(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/mount") || len(pts) != 3 {
		t.Errorf("a failing group: %v, %v; want the load points and an error naming the path", describePoints(pts), err)
	}

	if _, err := NewSystem("sys", config.SystemSource{Metrics: []string{"gpu"}}); err == nil {
		t.Error("NewSystem with metric gpu = nil error")
	}
}

func values(pts []*outpostv1.Point) map[string]float64 {
	out := map[string]float64{}
	for _, p := range pts {
		out[p.GetSensor()] = p.GetNum()
	}
	return out
}
