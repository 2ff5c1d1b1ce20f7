package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// runDrain measures drain to hub end to end. With the hub stopped, an
// agent's exec source (json_lines, linesPerRead points per read) fills the
// spool with a backlog of at least points points; the source is then
// stopped and the hub started, and the time from the hub's start until
// the agent's spool is empty — every point acknowledged by the broker,
// which the hub sends only after committing — gives points/s.
func runDrain(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	points := fs.Int("points", 200_000, "backlog to drain")
	drainRate := fs.Float64("drain-rate", 0, "telemetry.drain_rate of the agent, points/s (0 = no limit)")
	batch := fs.Int("batch", 500, "telemetry.batch_max_points (the agent's default is 500)")
	compression := fs.String("compression", "none", "telemetry.compression: none or zstd")
	lines := fs.Int("lines", 2000, "points the exec source prints per read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := newEnv(ctx)
	if err != nil {
		return err
	}
	defer e.close()
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	mqttAddr, err := freeAddr()
	if err != nil {
		return err
	}
	if err := e.startHubAt(ctx, httpAddr, mqttAddr); err != nil {
		return err
	}

	// The source prints a fixed file of json_lines points while no
	// "stop" file exists.
	srcDir := filepath.Join(e.dir, "source")
	if err := os.MkdirAll(srcDir, 0o700); err != nil {
		return err
	}
	var sb strings.Builder
	for i := range *lines {
		fmt.Fprintf(&sb, "{\"sensor\":\"s%02d\",\"value\":%d.%02d}\n", i%20, 20+i%7, i%100)
	}
	if err := os.WriteFile(filepath.Join(srcDir, "lines"), []byte(sb.String()), 0o600); err != nil {
		return err
	}
	script := fmt.Sprintf(`[ -e '%[1]s/stop' ] && exit 3; cat '%[1]s/lines'`, srcDir)
	a, err := e.joinAgent(ctx, "drain-1", map[string]any{
		"mqtt":      map[string]any{"backoff_min": "20ms", "backoff_max": "100ms"},
		"telemetry": map[string]any{"drain_rate": *drainRate, "batch_max_points": *batch, "compression": *compression},
		"sources": []any{map[string]any{"name": "bulk", "type": "exec", "interval": "10ms",
			"exec": map[string]any{"command": []string{"sh", "-c", script}, "format": "json_lines"}}},
		"spool": map[string]any{"max_bytes": "1GiB", "max_age": "0s"},
	})
	if err != nil {
		return err
	}
	e.hub.stop()

	agent, err := e.startAgent(a, "agent-drain.log")
	if err != nil {
		return err
	}
	var backlog float64
	fillStart := time.Now()
	err = poll(ctx, 5*time.Minute, 20*time.Millisecond, func() error {
		if agent.exited() {
			return fmt.Errorf("agent exited: %v\n%s", agent.err, agent.output())
		}
		m, err := a.metrics(ctx)
		if err != nil {
			return err
		}
		if backlog, err = metricOf(m, "outpost_agent_spool_points"); err != nil {
			return err
		}
		if backlog < float64(*points) {
			return fmt.Errorf("spool holds %.0f points", backlog)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(srcDir, "stop"), nil, 0o600); err != nil {
		return err
	}
	fill := time.Since(fillStart)
	// Let the last reads land, then take the final backlog.
	var m map[string]float64
	err = poll(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		m2, err := a.metrics(ctx)
		if err != nil {
			return err
		}
		if m != nil && m2["outpost_agent_spool_points"] == m["outpost_agent_spool_points"] {
			return nil
		}
		m = m2
		return fmt.Errorf("spool still growing")
	})
	if err != nil {
		return err
	}
	backlog = m["outpost_agent_spool_points"]
	fileSize := int64(0)
	if fi, err := os.Stat(filepath.Join(a.dir, "spool.db")); err == nil {
		fileSize = fi.Size()
	}

	t0 := time.Now()
	if err := e.startHubAt(ctx, httpAddr, mqttAddr); err != nil {
		return err
	}
	hubUp := time.Since(t0)
	cpu0 := mustCPU(e.hub.cmd.Process.Pid)
	err = poll(ctx, 10*time.Minute, 10*time.Millisecond, func() error {
		m, err := a.metrics(ctx)
		if err != nil {
			return err
		}
		if n := m["outpost_agent_spool_points"]; n > 0 {
			return fmt.Errorf("%.0f points left", n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(t0)
	cpu := mustCPU(e.hub.cmd.Process.Pid) - cpu0
	hm, err := scrape(ctx, e.hubURL+"/metrics")
	if err != nil {
		return err
	}
	stored := hm[`outpost_ingest_points_total{result="stored"}`]
	rate := *drainRate
	fmt.Fprintf(w, "drain to hub: %.0f points backlog (spool file %.1f MiB, filled in %s), batch_max_points %d, compression %s, drain_rate %v (0 = no limit)\n",
		backlog, float64(fileSize)/(1<<20), fill.Round(time.Millisecond), *batch, *compression, rate)
	fmt.Fprintf(w, "  drained in %s from the hub's exec (hub up after %s): %.0f points/s; excluding hub start-up %.0f points/s; hub CPU %.2f cores; hub stored %.0f\n",
		took.Round(time.Millisecond), hubUp.Round(time.Millisecond), backlog/took.Seconds(), backlog/(took-hubUp).Seconds(), cpu/(took-hubUp).Seconds(), stored)
	if stored != backlog {
		return fmt.Errorf("the hub stored %.0f points of a %.0f backlog", stored, backlog)
	}
	return nil
}
