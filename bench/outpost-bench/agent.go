package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"
)

// runStart measures how long the agent takes from exec to its first
// telemetry batch acknowledged by the hub's broker, runs times. The agent
// records the acknowledgement time itself
// (outpost_agent_last_publish_timestamp_seconds, millisecond resolution),
// so the polling interval of this program does not enter the figure.
func runStart(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	runs := fs.Int("runs", 20, "agent starts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := newEnvWithHub(ctx)
	if err != nil {
		return err
	}
	defer e.close()
	a, err := e.joinAgent(ctx, "start-1", map[string]any{
		"sources": []any{map[string]any{"name": "temperature", "type": "sim", "interval": "1s", "sim": map[string]any{"kind": "temperature"}}},
	})
	if err != nil {
		return err
	}
	var took []time.Duration
	for i := range *runs {
		t0 := time.Now()
		d, err := e.startAgent(a, fmt.Sprintf("agent-start-%d.log", i))
		if err != nil {
			return err
		}
		var first float64
		err = poll(ctx, 30*time.Second, 2*time.Millisecond, func() error {
			if d.exited() {
				return fmt.Errorf("agent exited: %v\n%s", d.err, d.output())
			}
			m, err := a.metrics(ctx)
			if err != nil {
				return err
			}
			if first, err = metricOf(m, "outpost_agent_last_publish_timestamp_seconds"); err != nil {
				return err
			}
			if first == 0 {
				return fmt.Errorf("no telemetry acknowledged yet")
			}
			return nil
		})
		if err != nil {
			return err
		}
		took = append(took, time.UnixMilli(int64(first*1000+0.5)).Sub(t0))
		d.stop()
	}
	first := took[0] // the first start creates the spool file
	slices.Sort(took)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond / 10) }
	fmt.Fprintf(w, "agent start to first telemetry acknowledged (one sim source, realtime reporting), %d runs: min %s, median %s, p90 %s, max %s; first run (fresh spool) %s\n",
		len(took), r(took[0]), r(took[len(took)/2]), r(took[len(took)*9/10]), r(took[len(took)-1]), r(first))
	return nil
}

// runRSS runs an agent with sources simulated sensors read rate times a
// second for duration and prints its resident memory. With --idle (or
// --sources 0) the agent is joined and connected to the hub but has no
// telemetry sources at all: agent.yaml says "sources: []", which the agent
// reads as "no sensors" (an absent key would mean the three default
// simulated sensors).
func runRSS(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("rss", flag.ContinueOnError)
	sources := fs.Int("sources", 20, "simulated sensors; 0 runs the agent idle")
	idle := fs.Bool("idle", false, "no telemetry sources, only the hub connection (same as --sources 0)")
	rate := fs.Float64("rate", 10, "reads per second per sensor")
	duration := fs.Duration("duration", 60*time.Second, "how long the agent runs, sampled once a second")
	workloads := fs.Bool("workloads", true, "run the agent with workloads.enabled (no services are deployed either way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *idle {
		*sources = 0
	}
	switch {
	case *sources < 0:
		return fmt.Errorf("--sources must be 0 or more, got %d", *sources)
	case *sources > 0 && *rate <= 0:
		return fmt.Errorf("--rate must be positive, got %g", *rate)
	case *duration < 2*time.Second:
		return fmt.Errorf("--duration must be at least 2s (one sample a second), got %s", *duration)
	}
	e, err := newEnvWithHub(ctx)
	if err != nil {
		return err
	}
	defer e.close()
	kinds := []string{"temperature", "humidity", "vibration"}
	// srcs is never nil so that zero sources is written as "sources: []".
	srcs := []any{}
	interval := time.Duration(float64(time.Second) / *rate)
	for i := range *sources {
		srcs = append(srcs, map[string]any{"name": fmt.Sprintf("s%02d", i), "type": "sim", "interval": interval.String(),
			"sim": map[string]any{"kind": kinds[i%3]}})
	}
	a, err := e.joinAgent(ctx, "rss-1", map[string]any{"sources": srcs, "workloads": map[string]any{"enabled": *workloads}})
	if err != nil {
		return err
	}
	d, err := e.startAgent(a, "agent-rss.log")
	if err != nil {
		return err
	}
	pid := d.cmd.Process.Pid
	t0 := time.Now()
	var samples []int64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(t0) < *duration {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if d.exited() {
			return fmt.Errorf("agent exited: %v\n%s", d.err, d.output())
		}
		st, err := procStatus(pid)
		if err != nil {
			return err
		}
		samples = append(samples, st["VmRSS"])
	}
	st, err := procStatus(pid)
	if err != nil {
		return err
	}
	cpu, _ := cpuSeconds(pid)
	m, err := a.metrics(ctx)
	if err != nil {
		return err
	}
	d.stop()
	// A figure for an agent that never reached the hub would not be the
	// one asked for.
	if m["outpost_agent_mqtt_connected"] != 1 {
		return fmt.Errorf("agent not connected to the hub at the end of the run (outpost_agent_mqtt_connected %g)\n%s",
			m["outpost_agent_mqtt_connected"], d.output())
	}
	what := fmt.Sprintf("%d sim sources at %g Hz", *sources, *rate)
	if *sources == 0 {
		what = "idle (no sources, connected to the hub)"
	}
	last := samples[len(samples)-1]
	steady := samples[len(samples)/2:]
	fmt.Fprintf(w, "agent RSS, %s for %s: VmRSS at end %.1f MiB, max of second half %.1f MiB, VmHWM %.1f MiB (at end: RssAnon %.1f MiB, RssFile %.1f MiB incl. the mmapped spool); CPU %.1f%% of one core; %.0f points collected, %.0f acknowledged\n",
		what, *duration, mib(last), mib(slices.Max(steady)), mib(st["VmHWM"]), mib(st["RssAnon"]), mib(st["RssFile"]), 100*cpu/time.Since(t0).Seconds(),
		m["outpost_agent_points_collected_total"], m["outpost_agent_points_acked_total"])
	return nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
