package protocol_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/proto"
)

// testDevice is the device every fixture is published by.
const testDevice = "pump-7"

// ts0 is 2025-11-25T10:40:00Z in milliseconds, the base timestamp of the fixtures.
const ts0 int64 = 1764067200000

// testNow is the "now" every decode in these tests is checked against. It is
// fixed so that the golden fixtures never age out of the timestamp window.
var testNow = time.Date(2025, 11, 26, 0, 0, 0, 0, time.UTC)

func numPt(sensor string, ts int64, v float64) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, TsUnixMs: ts, Value: &outpostv1.Point_Num{Num: v}}
}

func strPt(sensor string, ts int64, v string) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, TsUnixMs: ts, Value: &outpostv1.Point_Str{Str: v}}
}

func flagPt(sensor string, ts int64, v bool) *outpostv1.Point {
	return &outpostv1.Point{Sensor: sensor, TsUnixMs: ts, Value: &outpostv1.Point_Flag{Flag: v}}
}

func batch(device string, seq uint64, pts ...*outpostv1.Point) *outpostv1.TelemetryBatch {
	return &outpostv1.TelemetryBatch{Device: device, SeqFirst: seq, Points: pts}
}

// pbOf marshals m with plain proto.Marshal, independently of the code under test.
func pbOf(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshaling fixture: %v", err)
	}
	return b
}

// jp is one JSON point; ts and value are raw JSON.
func jp(sensor, ts, value string) string {
	return fmt.Sprintf(`{"sensor":%q,"ts":%s,"value":%s}`, sensor, ts, value)
}

// jbatch is a JSON batch of testDevice with seq_first 1.
func jbatch(points ...string) string {
	return `{"device":"pump-7","seq_first":1,"points":[` + strings.Join(points, ",") + `]}`
}

// goodJP is a JSON point that passes every check.
var goodJP = jp("temperature", "1764067200000", "21.5")

// checkCode fails t unless err carries code, both by errors.Is and by CodeOf.
func checkCode(t *testing.T, err error, code protocol.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if !errors.Is(err, code) {
		t.Errorf("errors.Is(%v, %s) = false", err, code)
	}
	if got := protocol.CodeOf(err); got != code {
		t.Errorf("CodeOf(%v) = %q, want %q", err, got, code)
	}
}
