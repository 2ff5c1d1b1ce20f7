package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"github.com/outpost-edge/outpost/internal/hub/store/sqlite"
)

// BenchmarkInsertPoints measures the write path the hub's group commit
// drives: one InsertPoints call per commit, on a real database file (WAL,
// synchronous FULL). Each call holds the points of all 50 devices, each
// device's as a run of consecutive seqs over 20 sensors, as the batches
// of a group commit arrive.
func BenchmarkInsertPoints(b *testing.B) {
	const (
		devices = 50
		sensors = 20
	)
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			// The ingest writer does not cancel a commit either.
			ctx := context.WithoutCancel(b.Context())
			s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "outpost.db"))
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			defer s.Close()
			ids := make([]string, devices)
			for i := range ids {
				ids[i] = fmt.Sprintf("dev-%03d", i)
				if err := s.CreateDevice(ctx, store.Device{ID: ids[i], CreatedAt: t0}); err != nil {
					b.Fatalf("CreateDevice: %v", err)
				}
			}
			names := make([]string, sensors)
			for i := range names {
				names[i] = fmt.Sprintf("line1/sensor-%02d", i)
			}
			points := make([]store.Point, batch)
			perDevice := batch / devices
			seqs := make([]uint64, devices)
			seen := t0
			for b.Loop() {
				// Filling the batch is timed too: it costs microseconds
				// against the milliseconds of a commit.
				for i := range points {
					dev := i / perDevice
					seqs[dev]++
					ts := seen.Add(time.Duration(i%perDevice) * time.Millisecond)
					p := store.Point{DeviceID: ids[dev], Seq: seqs[dev], Sensor: names[seqs[dev]%sensors], TS: ts}
					switch i % 3 {
					case 0:
						p.Kind, p.Num = store.KindNum, float64(i)+0.5
					case 1:
						p.Kind, p.Str = store.KindStr, "ok"
					default:
						p.Kind, p.Flag = store.KindFlag, i%2 == 0
					}
					points[i] = p
				}
				n, err := s.InsertPoints(ctx, points, seen)
				if err != nil || n != batch {
					b.Fatalf("InsertPoints = %d, %v; want %d", n, err, batch)
				}
				seen = seen.Add(100 * time.Millisecond)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "points/s")
		})
	}
}
