package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// runIngest measures the hub's sustained ingest: devices MQTT clients
// (paho, like the agent) each keep window QoS 1 publishes of batch points
// in flight against a real `outpost hub` with SQLite; a point counts once
// the broker's PUBACK arrived, which the hub sends only after the point
// is committed. It prints acknowledged points/s over the measuring window
// and the hub's CPU use.
func runIngest(ctx context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	devices := fs.Int("devices", 50, "concurrent MQTT clients, one device each")
	batch := fs.Int("batch", 100, "points per telemetry batch")
	window := fs.Int("window", 4, "QoS 1 publishes in flight per client")
	sensors := fs.Int("sensors", 20, "distinct sensor names per device")
	warmup := fs.Duration("warmup", 3*time.Second, "load before measuring starts")
	duration := fs.Duration("duration", 20*time.Second, "measuring window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := newEnvWithHub(ctx)
	if err != nil {
		return err
	}
	defer e.close()

	clients := make([]*paho.Client, *devices)
	ids := make([]string, *devices)
	for i := range clients {
		ids[i] = fmt.Sprintf("ingest-%03d", i)
		token, err := e.addDevice(ctx, ids[i])
		if err != nil {
			return err
		}
		pw, err := e.joinHTTP(ctx, token)
		if err != nil {
			return err
		}
		conn, err := net.Dial("tcp", e.mqttAddr)
		if err != nil {
			return err
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: ids[i], Conn: conn})
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: ids[i], Username: ids[i], UsernameFlag: true, Password: []byte(pw), PasswordFlag: true, KeepAlive: 30, CleanStart: true})
		if err != nil {
			return fmt.Errorf("connecting %s: %w", ids[i], err)
		}
		if ca.ReasonCode != 0 {
			return fmt.Errorf("connecting %s: reason code %d", ids[i], ca.ReasonCode)
		}
		clients[i] = c
		defer c.Disconnect(&paho.Disconnect{})
	}

	var acked, failed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	names := make([]string, *sensors)
	for i := range names {
		names[i] = fmt.Sprintf("line1/sensor-%02d", i)
	}
	for i, c := range clients {
		var seq atomic.Uint64 // next seq_first of this device, less 1
		for range *window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for loadCtx.Err() == nil {
					first := seq.Add(uint64(*batch)) - uint64(*batch) + 1
					now := time.Now().UnixMilli()
					pts := make([]*outpostv1.Point, *batch)
					for k := range pts {
						pts[k] = &outpostv1.Point{Sensor: names[k%len(names)], TsUnixMs: now, Value: &outpostv1.Point_Num{Num: 20 + float64(k%500)/100}}
					}
					payload, err := protocol.EncodeTelemetry(&outpostv1.TelemetryBatch{Device: ids[i], SeqFirst: first, Points: pts})
					if err != nil {
						panic(err)
					}
					pctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					pr, err := c.Publish(pctx, &paho.Publish{Topic: protocol.TelemetryTopic(ids[i]), QoS: 1, Payload: payload,
						Properties: &paho.PublishProperties{ContentType: protocol.ContentTypeProtobuf}})
					cancel()
					if err != nil || (pr != nil && pr.ReasonCode >= 0x80) {
						failed.Add(1)
						continue
					}
					acked.Add(int64(*batch))
				}
			}()
		}
	}

	warm := time.NewTimer(*warmup)
	select {
	case <-ctx.Done():
		stopLoad()
		wg.Wait()
		return ctx.Err()
	case <-warm.C:
	}
	a0, cpu0, self0, t0 := acked.Load(), mustCPU(e.hub.cmd.Process.Pid), mustCPU(os.Getpid()), time.Now()
	measure := time.NewTimer(*duration)
	select {
	case <-ctx.Done():
	case <-measure.C:
	}
	a1, cpu1, self1, t1 := acked.Load(), mustCPU(e.hub.cmd.Process.Pid), mustCPU(os.Getpid()), time.Now()
	stopLoad()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	m, err := scrape(ctx, e.hubURL+"/metrics")
	if err != nil {
		return err
	}
	stored := m[`outpost_ingest_points_total{result="stored"}`]
	rss, _ := procStatus(e.hub.cmd.Process.Pid)
	secs := t1.Sub(t0).Seconds()
	fmt.Fprintf(w, "hub ingest: %d clients × %d in flight, %d points/batch, protobuf, QoS 1, SQLite\n", *devices, *window, *batch)
	fmt.Fprintf(w, "  %.0f points/s acknowledged over %.1fs (after %s warm-up); hub CPU %.2f cores, load generator %.2f cores; hub VmHWM %d KiB\n",
		float64(a1-a0)/secs, secs, *warmup, (cpu1-cpu0)/secs, (self1-self0)/secs, rss["VmHWM"])
	if a1 > a0 {
		fmt.Fprintf(w, "  hub CPU per 10k points stored: %.1f ms\n", (cpu1-cpu0)/float64(a1-a0)*1e4*1e3)
	}
	fmt.Fprintf(w, "  total acknowledged %d, stored per hub metrics %.0f, failed publishes %d\n", acked.Load(), stored, failed.Load())
	if float64(acked.Load()) > stored {
		return fmt.Errorf("the broker acknowledged %d points but the hub stored %.0f", acked.Load(), stored)
	}
	return nil
}
