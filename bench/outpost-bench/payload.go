package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/internal/agent/collect"
	"github.com/outpost-edge/outpost/protocol"
)

// runPayload prints the payload bytes per point of telemetry batches in
// JSON, protobuf (the agent's compact form) and protobuf + zstd, for
// batches of simulated readings: n sensors (cycling temperature, humidity,
// vibration) read every interval, batched in time order.
func runPayload(_ context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("payload", flag.ContinueOnError)
	sensors := fs.Int("sensors", 20, "simulated sensors")
	interval := fs.Duration("interval", 100*time.Millisecond, "time between two reads of a sensor")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kinds := []string{collect.SimTemperature, collect.SimHumidity, collect.SimVibration}
	sims := make([]*collect.Sim, *sensors)
	for i := range sims {
		s, err := collect.NewSim(kinds[i%len(kinds)], collect.SimSeed("bench-1", fmt.Sprint(i)))
		if err != nil {
			return err
		}
		sims[i] = s
	}
	names := make([]string, *sensors)
	for i := range names {
		names[i] = fmt.Sprintf("line1/%s-%d", kinds[i%len(kinds)], i)
	}
	start := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	points := func(n int) []*outpostv1.Point {
		out := make([]*outpostv1.Point, 0, n)
		for tick := 0; len(out) < n; tick++ {
			now := start.Add(time.Duration(tick) * *interval)
			for i := 0; i < *sensors && len(out) < n; i++ {
				out = append(out, &outpostv1.Point{Sensor: names[i], TsUnixMs: now.UnixMilli(), Value: &outpostv1.Point_Num{Num: sims[i].Value(now)}})
			}
		}
		return out
	}
	fmt.Fprintf(w, "payload bytes per point, %d simulated sensors read every %s (values rounded as the sim sources round them)\n", *sensors, *interval)
	fmt.Fprintf(w, "%-7s %10s %10s %12s %10s %14s %14s\n", "points", "json", "protobuf", "protobuf+zstd", "json+zstd", "protobuf vs json", "pb+zstd vs json")
	for _, n := range []int{1, 10, 100, 1000} {
		b := &outpostv1.TelemetryBatch{Device: "bench-1", SeqFirst: 1234567, Points: points(n)}
		js, err := protocol.EncodeTelemetryJSON(b)
		if err != nil {
			return err
		}
		pb, err := protocol.EncodeTelemetry(b)
		if err != nil {
			return err
		}
		pbz := protocol.CompressZstd(pb)
		jsz := protocol.CompressZstd(js)
		// The hub must read back what was sent.
		for _, p := range [][]byte{js, pb, pbz} {
			got, err := protocol.DecodeTelemetry(p, "", "bench-1", start)
			if err != nil {
				return fmt.Errorf("decoding a %d-point batch: %w", n, err)
			}
			if len(got.GetPoints()) != n {
				return fmt.Errorf("decoded %d points of %d", len(got.GetPoints()), n)
			}
		}
		per := func(b []byte) float64 { return float64(len(b)) / float64(n) }
		fmt.Fprintf(w, "%-7d %10.1f %10.1f %12.1f %10.1f %13.0f%% %13.0f%%\n", n, per(js), per(pb), per(pbz), per(jsz),
			100*(1-per(pb)/per(js)), 100*(1-per(pbz)/per(js)))
	}
	return nil
}
