package protocol_test

import (
	"bytes"
	"math"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/proto"
)

func bigBatch(n int) *outpostv1.TelemetryBatch {
	b := &outpostv1.TelemetryBatch{Device: "pump-7", SeqFirst: 1}
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()
	for i := 0; i < n; i++ {
		b.Points = append(b.Points, &outpostv1.Point{Sensor: "line1/temperature", TsUnixMs: ts + int64(i)*100,
			Value: &outpostv1.Point_Num{Num: 21.5 + float64(i%7)*0.1}})
	}
	return b
}

func TestZstdRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	want := bigBatch(500)
	for _, tc := range []struct {
		name   string
		encode func(*outpostv1.TelemetryBatch) ([]byte, error)
		ct     string
	}{
		{"protobuf", protocol.EncodeTelemetry, protocol.ContentTypeProtobuf},
		{"protobuf sniffed", protocol.EncodeTelemetry, ""},
		{"json", protocol.EncodeTelemetryJSON, protocol.ContentTypeJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, err := tc.encode(want)
			if err != nil {
				t.Fatal(err)
			}
			z := protocol.CompressZstd(plain)
			if !protocol.IsZstd(z) || len(z) >= len(plain)/2 {
				t.Fatalf("compressed %d bytes to %d", len(plain), len(z))
			}
			got, err := protocol.DecodeTelemetry(z, tc.ct, "pump-7", now)
			if err != nil {
				t.Fatalf("DecodeTelemetry: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Fatal("decoded batch differs from the one compressed")
			}
		})
	}
}

func TestZstdRejections(t *testing.T) {
	now := time.Now()
	bomb := protocol.CompressZstd(bytes.Repeat([]byte{'{'}, protocol.MaxDecompressedBytes+1))
	if len(bomb) > protocol.MaxPayloadBytes {
		t.Fatalf("bomb is %d bytes; it should fit the wire limit", len(bomb))
	}
	corrupt := protocol.CompressZstd([]byte(`{"seq_first":1,"points":[]}`))
	corrupt[len(corrupt)-3] ^= 0xff
	for _, tc := range []struct {
		name    string
		payload []byte
		want    protocol.Code
	}{
		{"expands past the limit", bomb, protocol.CodeTooLarge},
		{"truncated frame", protocol.CompressZstd(bytes.Repeat([]byte("x"), 1000))[:8], protocol.CodeMalformed},
		{"corrupt frame", corrupt, protocol.CodeMalformed},
		{"valid frame, bad content", protocol.CompressZstd([]byte(`{"seq_first":0,"points":[]}`)), protocol.CodeEmptyBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.DecodeTelemetry(tc.payload, "", "pump-7", now)
			if protocol.CodeOf(err) != tc.want {
				t.Fatalf("DecodeTelemetry = %v, want %s", err, tc.want)
			}
		})
	}
}

// BenchmarkPayloadSize reports wire bytes per point for JSON, protobuf and
// protobuf+zstd on a realistic 100-point batch of three sensors.
func BenchmarkPayloadSize(b *testing.B) {
	batch := &outpostv1.TelemetryBatch{Device: "pump-7", SeqFirst: 1_000_000}
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()
	for i := 0; i < 100; i++ {
		name := []string{"temperature", "humidity", "vibration"}[i%3]
		v := []float64{21.73 + float64(i%11)*0.07, 48.2 - float64(i%5)*0.3, 0.12 + float64(i%13)*0.011}[i%3]
		batch.Points = append(batch.Points, &outpostv1.Point{Sensor: name, TsUnixMs: ts + int64(i/3)*1000, Value: &outpostv1.Point_Num{Num: v}})
	}
	js, _ := protocol.EncodeTelemetryJSON(batch)
	pb, _ := protocol.EncodeTelemetry(batch)
	var z []byte
	for b.Loop() {
		z = protocol.CompressZstd(pb)
	}
	n := float64(len(batch.Points))
	b.ReportMetric(float64(len(js))/n, "json-B/point")
	b.ReportMetric(float64(len(pb))/n, "pb-B/point")
	b.ReportMetric(float64(len(z))/n, "pb+zstd-B/point")
}

func TestCompactFormRejections(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()
	num := &outpostv1.Point_Num{Num: 1}
	for _, tc := range []struct {
		name  string
		batch *outpostv1.TelemetryBatch
		want  protocol.Code
	}{
		{"sensor_ref outside table", &outpostv1.TelemetryBatch{SeqFirst: 1, SensorTable: []string{"a"}, TsBaseMs: base,
			Points: []*outpostv1.Point{{SensorRef: 2, Value: num}}}, protocol.CodeBadName},
		{"sensor and sensor_ref", &outpostv1.TelemetryBatch{SeqFirst: 1, SensorTable: []string{"a"}, TsBaseMs: base,
			Points: []*outpostv1.Point{{Sensor: "b", SensorRef: 1, Value: num}}}, protocol.CodeBadName},
		{"ts and ts_delta", &outpostv1.TelemetryBatch{SeqFirst: 1, TsBaseMs: base,
			Points: []*outpostv1.Point{{Sensor: "a", TsUnixMs: base, TsDeltaMs: 5, Value: num}}}, protocol.CodeBadTimestamp},
		{"delta overflows", &outpostv1.TelemetryBatch{SeqFirst: 1, TsBaseMs: 1 << 62,
			Points: []*outpostv1.Point{{Sensor: "a", TsDeltaMs: 1 << 62, Value: num}}}, protocol.CodeBadTimestamp},
		{"bad name in table", &outpostv1.TelemetryBatch{SeqFirst: 1, SensorTable: []string{"bad name"}, TsBaseMs: base,
			Points: []*outpostv1.Point{{SensorRef: 1, Value: num}}}, protocol.CodeBadName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := proto.Marshal(tc.batch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := protocol.DecodeTelemetry(raw, "", "pump-7", now); protocol.CodeOf(err) != tc.want {
				t.Fatalf("DecodeTelemetry = %v, want %s", err, tc.want)
			}
		})
	}
	// A third-party encoder may mix forms: full names and times on some
	// points, references and deltas on others.
	mixed := &outpostv1.TelemetryBatch{SeqFirst: 1, SensorTable: []string{"a"}, TsBaseMs: base, Points: []*outpostv1.Point{
		{SensorRef: 1, TsDeltaMs: 10, Value: num}, {Sensor: "b", TsUnixMs: base + 20, Value: num}}}
	raw, _ := proto.Marshal(mixed)
	got, err := protocol.DecodeTelemetry(raw, "", "pump-7", now)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.GetPoints(); p[0].GetSensor() != "a" || p[0].GetTsUnixMs() != base+10 || p[1].GetSensor() != "b" || p[1].GetTsUnixMs() != base+20 ||
		len(got.GetSensorTable()) != 0 || got.GetTsBaseMs() != 0 {
		t.Fatalf("mixed batch decoded to %v", got)
	}
}

// Numbers travel as scaled decimals when that is exact; every value must come
// back bit for bit, whichever form the encoder picked.
func TestDecimalValuesRoundTripExactly(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()
	values := []float64{0, 1, -1, 21.73, 0.1, 0.3, -3.25, 1e-7, 1e-10, 123456789.123, 1e20, 9007199254740993, 3.141592653589793,
		math.Copysign(0, -1), math.MaxFloat64, math.SmallestNonzeroFloat64, 47.99999999999999}
	b := &outpostv1.TelemetryBatch{SeqFirst: 1}
	for i, v := range values {
		b.Points = append(b.Points, &outpostv1.Point{Sensor: "v", TsUnixMs: ts + int64(i), Value: &outpostv1.Point_Num{Num: v}})
	}
	raw, err := protocol.EncodeTelemetry(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.DecodeTelemetry(raw, "", "pump-7", now)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got.GetPoints() {
		if g := p.GetNum(); math.Float64bits(g) != math.Float64bits(values[i]) {
			t.Errorf("value %d: sent %v (%#x), got %v (%#x)", i, values[i], math.Float64bits(values[i]), g, math.Float64bits(g))
		}
	}
	bad := &outpostv1.TelemetryBatch{SeqFirst: 1, Points: []*outpostv1.Point{{Sensor: "v", TsUnixMs: ts, Value: &outpostv1.Point_Decimal{Decimal: 5}, DecimalExp: 30}}}
	raw, _ = proto.Marshal(bad)
	if _, err := protocol.DecodeTelemetry(raw, "", "pump-7", now); protocol.CodeOf(err) != protocol.CodeBadValue {
		t.Errorf("decimal exponent 30: %v, want %s", err, protocol.CodeBadValue)
	}
}
