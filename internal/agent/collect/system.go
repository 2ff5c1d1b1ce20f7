package collect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/config"
	"github.com/outpost-edge/outpost/protocol"
)

// System is a source of the host's own metrics, read from /proc and /sys
// (Linux). Its points are "<source name>/<metric>":
//
//   - cpu: cpu_percent, the share of non-idle CPU time since the previous
//     read over all cores, 0 to 100 (absent at the first read);
//   - load: load1, load5 and load15, the load averages;
//   - memory: mem_total_bytes, mem_available_bytes, mem_used_bytes (total
//     minus available) and mem_used_percent;
//   - disk: disk_used_percent:<path> for every configured mount point, as
//     df counts it (used over used plus available to unprivileged users);
//   - network: net_rx_bytes and net_tx_bytes, counters since boot, summed
//     over every interface but lo, or net_rx_bytes:<if> and
//     net_tx_bytes:<if> for each configured interface;
//   - temperature: temp_celsius:<zone> for every zone under
//     /sys/class/thermal that can be read (none when there are none).
//
// A group that cannot be read fails the read, but the other groups' points
// are still returned.
type System struct {
	name       string
	metrics    []string
	paths      []string
	interfaces []string
	// procDir and sysDir are /proc and /sys, or a fake tree in tests.
	procDir, sysDir string
	// prevBusy and prevTotal are the CPU times of the previous read, in
	// clock ticks; prevOK tells whether there was one.
	prevBusy, prevTotal uint64
	prevOK              bool
}

var _ Source = (*System)(nil)

// NewSystem returns a System source named name. Empty Metrics means all
// groups, empty Paths means "/".
func NewSystem(name string, cfg config.SystemSource) (*System, error) {
	s := &System{
		name:       name,
		metrics:    slices.Clone(cfg.Metrics),
		paths:      slices.Clone(cfg.Paths),
		interfaces: slices.Clone(cfg.Interfaces),
		procDir:    "/proc",
		sysDir:     "/sys",
	}
	if len(s.metrics) == 0 {
		s.metrics = slices.Clone(config.SystemMetrics)
	}
	if len(s.paths) == 0 {
		s.paths = []string{"/"}
	}
	for _, m := range s.metrics {
		if !slices.Contains(config.SystemMetrics, m) {
			return nil, fmt.Errorf("system: unknown metric group %q", m)
		}
	}
	for _, p := range s.paths {
		if err := protocol.ValidSensorName(name + "/" + config.DiskSensor(p)); err != nil {
			return nil, fmt.Errorf("system: path %q: %w", p, err)
		}
	}
	return s, nil
}

// Collect reads every configured metric group.
func (s *System) Collect(_ context.Context, _ time.Time) ([]*outpostv1.Point, error) {
	var points []*outpostv1.Point
	var errs []error
	add := func(field string, v float64) { points = append(points, numPoint(s.name+"/"+field, v)) }
	for _, m := range s.metrics {
		var err error
		switch m {
		case config.SystemCPU:
			err = s.cpu(add)
		case config.SystemLoad:
			err = s.load(add)
		case config.SystemMemory:
			err = s.memory(add)
		case config.SystemDisk:
			for _, p := range s.paths {
				if pct, derr := diskUsedPercent(p); derr != nil {
					errs = append(errs, fmt.Errorf("reading disk use of %s: %w", p, derr))
				} else {
					add(config.DiskSensor(p), pct)
				}
			}
		case config.SystemNetwork:
			err = s.network(add)
		case config.SystemTemperature:
			s.temperature(add)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return points, errors.Join(errs...)
}

func (s *System) cpu(add func(string, float64)) error {
	data, err := os.ReadFile(filepath.Join(s.procDir, "stat"))
	if err != nil {
		return fmt.Errorf("reading cpu times: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return fmt.Errorf("reading cpu times: unexpected first line %q of %s/stat", line, s.procDir)
	}
	// user nice system idle iowait irq softirq steal; guest time is
	// already part of user.
	var ticks [8]uint64
	for i := 1; i < len(f) && i <= len(ticks); i++ {
		if ticks[i-1], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return fmt.Errorf("reading cpu times: %q is not a number", f[i])
		}
	}
	var total uint64
	for _, t := range ticks {
		total += t
	}
	busy := total - ticks[3] - ticks[4]
	if s.prevOK && total > s.prevTotal && busy >= s.prevBusy {
		pct := 100 * float64(busy-s.prevBusy) / float64(total-s.prevTotal)
		add("cpu_percent", min(max(pct, 0), 100))
	}
	s.prevBusy, s.prevTotal, s.prevOK = busy, total, true
	return nil
}

func (s *System) load(add func(string, float64)) error {
	data, err := os.ReadFile(filepath.Join(s.procDir, "loadavg"))
	if err != nil {
		return fmt.Errorf("reading load average: %w", err)
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return fmt.Errorf("reading load average: unexpected %q", data)
	}
	for i, name := range []string{"load1", "load5", "load15"} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return fmt.Errorf("reading load average: %q is not a number", f[i])
		}
		add(name, v)
	}
	return nil
}

func (s *System) memory(add func(string, float64)) error {
	fh, err := os.Open(filepath.Join(s.procDir, "meminfo"))
	if err != nil {
		return fmt.Errorf("reading memory use: %w", err)
	}
	defer fh.Close()
	var total, avail uint64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(fh)
	for sc.Scan() && !(haveTotal && haveAvail) {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("reading memory use: %s %q is not a number", key, f[0])
		}
		if key == "MemTotal" {
			total, haveTotal = kb*1024, true
		} else {
			avail, haveAvail = kb*1024, true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading memory use: %w", err)
	}
	if !haveTotal || !haveAvail || total == 0 || avail > total {
		return fmt.Errorf("reading memory use: no usable MemTotal and MemAvailable in %s/meminfo", s.procDir)
	}
	add("mem_total_bytes", float64(total))
	add("mem_available_bytes", float64(avail))
	add("mem_used_bytes", float64(total-avail))
	add("mem_used_percent", 100*float64(total-avail)/float64(total))
	return nil
}

func (s *System) network(add func(string, float64)) error {
	data, err := os.ReadFile(filepath.Join(s.procDir, "net", "dev"))
	if err != nil {
		return fmt.Errorf("reading network counters: %w", err)
	}
	type counters struct{ rx, tx uint64 }
	byIf := map[string]counters{}
	var total counters
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue // the two header lines
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, err1 := strconv.ParseUint(f[0], 10, 64)
		tx, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("reading network counters: bad line %q", line)
		}
		byIf[name] = counters{rx, tx}
		if name != "lo" {
			total.rx += rx
			total.tx += tx
		}
	}
	if len(s.interfaces) == 0 {
		add("net_rx_bytes", float64(total.rx))
		add("net_tx_bytes", float64(total.tx))
		return nil
	}
	var missing []string
	for _, name := range s.interfaces {
		c, ok := byIf[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		add("net_rx_bytes:"+name, float64(c.rx))
		add("net_tx_bytes:"+name, float64(c.tx))
	}
	if len(missing) > 0 {
		return fmt.Errorf("reading network counters: no interface %s", strings.Join(missing, ", "))
	}
	return nil
}

// temperature reports every thermal zone that can be read; zones that
// cannot (some firmware zones always fail) are skipped without an error.
func (s *System) temperature(add func(string, float64)) {
	zones, _ := filepath.Glob(filepath.Join(s.sysDir, "class", "thermal", "thermal_zone*", "temp"))
	for _, z := range zones {
		data, err := os.ReadFile(z)
		if err != nil {
			continue
		}
		milli, err := parseNumber(string(data))
		if err != nil {
			continue
		}
		add("temp_celsius:"+filepath.Base(filepath.Dir(z)), milli/1000)
	}
}
