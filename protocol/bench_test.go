package protocol_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/proto"
)

// benchDevice, benchStart and benchNow fix the device, the first reading
// and the decoder's clock of the telemetry benchmarks, so every run encodes
// the same bytes.
const benchDevice = "bench-1"

var (
	benchStart = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	benchNow   = benchStart.Add(time.Hour)
)

// simBatch returns a batch of n readings of sensors simulated sensors read
// every interval, in time order, shaped like the batches of
// bench/outpost-bench/payload.go (which uses the agent's collect.Sim, out of
// reach here: protocol depends on nothing else in the repository). The
// sensors cycle temperature, humidity and vibration; each value is a slow
// drift plus noise, rounded to 2, 1 and 3 decimals as collect.Sim rounds
// them, because the compact encoding's size depends on the decimals.
func simBatch(n, sensors int, interval time.Duration) *outpostv1.TelemetryBatch {
	kinds := []string{"temperature", "humidity", "vibration"}
	names := make([]string, sensors)
	for i := range names {
		names[i] = fmt.Sprintf("line1/%s-%d", kinds[i%len(kinds)], i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	round := func(v float64, digits int) float64 {
		p := math.Pow(10, float64(digits))
		return math.Round(v*p) / p
	}
	b := &outpostv1.TelemetryBatch{Device: benchDevice, SeqFirst: 1234567, Points: make([]*outpostv1.Point, 0, n)}
	for tick := 0; len(b.Points) < n; tick++ {
		now := benchStart.Add(time.Duration(tick) * interval)
		drift := math.Sin(2 * math.Pi * now.Sub(benchStart).Seconds() / 600)
		for i := 0; i < sensors && len(b.Points) < n; i++ {
			var v float64
			switch i % len(kinds) {
			case 0:
				v = round(22.5+1.6*drift+0.15*rng.NormFloat64(), 2)
			case 1:
				v = round(50+12*drift+0.8*rng.NormFloat64(), 1)
			default:
				v = round(0.45+0.1*drift+math.Abs(0.05*rng.NormFloat64()), 3)
			}
			b.Points = append(b.Points, &outpostv1.Point{Sensor: names[i], TsUnixMs: now.UnixMilli(), Value: &outpostv1.Point_Num{Num: v}})
		}
	}
	return b
}

// telemetryFormats are the wire forms compared: JSON for third-party
// devices, the agent's compact protobuf, and that protobuf in a zstd frame.
// DecodeTelemetry recognises the zstd frame by its magic number and
// decompresses it itself, so decoding always goes through it.
var telemetryFormats = []struct {
	name        string
	contentType string
	encode      func(*outpostv1.TelemetryBatch) ([]byte, error)
}{
	{"json", protocol.ContentTypeJSON, protocol.EncodeTelemetryJSON},
	{"protobuf", protocol.ContentTypeProtobuf, protocol.EncodeTelemetry},
	{"protobuf+zstd", protocol.ContentTypeProtobuf, func(b *outpostv1.TelemetryBatch) ([]byte, error) {
		pb, err := protocol.EncodeTelemetry(b)
		if err != nil {
			return nil, err
		}
		return protocol.CompressZstd(pb), nil
	}},
}

// BenchmarkTelemetry encodes and decodes batches of 20 simulated sensors
// read at 10 Hz in each wire format, reporting the payload's bytes per
// point and the time per point besides ns/op:
//
//	go test -run '^$' -bench Telemetry -benchtime 200ms ./protocol/
func BenchmarkTelemetry(b *testing.B) {
	sizes := []int{10, 100, 1000}
	batches := make(map[int]*outpostv1.TelemetryBatch, len(sizes))
	for _, n := range sizes {
		batches[n] = simBatch(n, 20, 100*time.Millisecond)
	}
	b.Run("encode", func(b *testing.B) {
		for _, f := range telemetryFormats {
			b.Run(f.name, func(b *testing.B) {
				for _, n := range sizes {
					b.Run(strconv.Itoa(n), func(b *testing.B) {
						batch := batches[n]
						b.ReportAllocs()
						var payload []byte
						for b.Loop() {
							var err error
							if payload, err = f.encode(batch); err != nil {
								b.Fatal(err)
							}
						}
						reportPerPoint(b, len(payload), n)
					})
				}
			})
		}
	})
	b.Run("decode", func(b *testing.B) {
		for _, f := range telemetryFormats {
			b.Run(f.name, func(b *testing.B) {
				for _, n := range sizes {
					b.Run(strconv.Itoa(n), func(b *testing.B) {
						payload, err := f.encode(batches[n])
						if err != nil {
							b.Fatal(err)
						}
						// A decoder that loses points must not look fast.
						got, err := protocol.DecodeTelemetry(payload, f.contentType, benchDevice, benchNow)
						if err != nil {
							b.Fatalf("decoding the %d-point %s batch: %v", n, f.name, err)
						}
						if len(got.GetPoints()) != n {
							b.Fatalf("decoded %d points of %d", len(got.GetPoints()), n)
						}
						if !proto.Equal(got, batches[n]) {
							b.Fatalf("the decoded %d-point %s batch differs from the encoded one", n, f.name)
						}
						b.ReportAllocs()
						for b.Loop() {
							if _, err := protocol.DecodeTelemetry(payload, f.contentType, benchDevice, benchNow); err != nil {
								b.Fatal(err)
							}
						}
						reportPerPoint(b, len(payload), n)
					})
				}
			})
		}
	})
}

// reportPerPoint reports the payload's bytes per point and the measured time
// per point; it must be called after the b.Loop loop, which sets b.N.
func reportPerPoint(b *testing.B, payloadBytes, points int) {
	b.ReportMetric(float64(payloadBytes)/float64(points), "B/point")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(points), "ns/point")
}
