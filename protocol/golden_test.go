package protocol_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/proto"
)

// update rewrites the golden files in testdata/ from goldenCases:
//
//	go test ./protocol/ -run TestGolden -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases are the canonical batches behind testdata/<name>.pb (as
// EncodeTelemetry writes it) and testdata/<name>.json (as EncodeTelemetryJSON
// writes it). Every batch is valid for testDevice at testNow.
var goldenCases = []struct {
	name  string
	batch *outpostv1.TelemetryBatch
}{
	{"numeric", batch(testDevice, 1,
		numPt("temperature", ts0, 21.5),
		numPt("pressure", ts0+1000, -0.00325),
		numPt("rpm", ts0+2000, 1480),
		numPt("zero", ts0+3000, 0),
		numPt("huge", ts0+4000, 1e300),
		numPt("tiny", ts0+5000, -5e-324),
	)},
	{"string", batch(testDevice, 42,
		strPt("firmware", ts0, "v1.4.2"),
		strPt("note", ts0, `said "hi" <&> über ☃ 😀`+"\n\ttab"),
		strPt("empty", ts0+1, ""),
	)},
	{"bool", batch(testDevice, 7,
		flagPt("door", ts0, true),
		flagPt("alarm", ts0, false),
	)},
	{"multi_sensor", batch(testDevice, 1000,
		numPt("line1/pressure", ts0, 3.2),
		numPt("modbus:40001", ts0, 17),
		strPt("plc:rack2/slot3:ai0", ts0+10, "ok"),
		flagPt("site.a/line-1/valve_3:open", ts0+20, true),
		numPt("line1/pressure", ts0+1000, 3.3),
	)},
	{"large_seq", batch(testDevice, math.MaxInt64-2, // The largest seq_first two points allow.
		numPt("counter", ts0, 1),
		numPt("counter", ts0+1000, 2),
	)},
	{"device_omitted", batch("", 5, numPt("temperature", ts0, 19.75))},
}

func goldenPath(name, ext string) string { return filepath.Join("testdata", name+ext) }

// readOrUpdateGolden returns the golden file's content, first rewriting it
// with got under -update.
func readOrUpdateGolden(t *testing.T, path string, got []byte) []byte {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	return want
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			// What DecodeTelemetry returns: the batch with the topic's device.
			want := proto.Clone(tc.batch).(*outpostv1.TelemetryBatch)
			want.Device = testDevice

			pb, err := protocol.EncodeTelemetry(tc.batch)
			if err != nil {
				t.Fatalf("EncodeTelemetry: %v", err)
			}
			js, err := protocol.EncodeTelemetryJSON(tc.batch)
			if err != nil {
				t.Fatalf("EncodeTelemetryJSON: %v", err)
			}
			goldenPB := readOrUpdateGolden(t, goldenPath(tc.name, ".pb"), pb)
			goldenJSON := readOrUpdateGolden(t, goldenPath(tc.name, ".json"), js)

			t.Run("encode/protobuf", func(t *testing.T) {
				if !bytes.Equal(pb, goldenPB) {
					t.Errorf("EncodeTelemetry = %x\nwant golden     %x", pb, goldenPB)
				}
				// The compact form is byte-stable and smaller than the plain
				// encoding of the same batch.
				again, err := protocol.EncodeTelemetry(tc.batch)
				if err != nil || !bytes.Equal(pb, again) {
					t.Errorf("EncodeTelemetry is not stable: %x then %x (%v)", pb, again, err)
				}
				plain, err := proto.Marshal(tc.batch)
				if err != nil {
					t.Fatal(err)
				}
				if len(tc.batch.GetPoints()) > 1 && len(pb) >= len(plain) {
					t.Errorf("compact encoding is %d bytes, plain %d", len(pb), len(plain))
				}
			})
			t.Run("encode/json", func(t *testing.T) {
				if !bytes.Equal(js, goldenJSON) {
					t.Errorf("EncodeTelemetryJSON = %s\nwant golden         %s", js, goldenJSON)
				}
			})
			for _, d := range []struct {
				name, contentType string
				payload           []byte
			}{
				{"decode/protobuf/content-type", protocol.ContentTypeProtobuf, goldenPB},
				{"decode/protobuf/sniffed", "", goldenPB},
				{"decode/json/content-type", protocol.ContentTypeJSON, goldenJSON},
				{"decode/json/sniffed", "", goldenJSON},
			} {
				t.Run(d.name, func(t *testing.T) {
					got, err := protocol.DecodeTelemetry(d.payload, d.contentType, testDevice, testNow)
					if err != nil {
						t.Fatalf("DecodeTelemetry: %v", err)
					}
					if !proto.Equal(got, want) {
						t.Errorf("DecodeTelemetry =\n%v\nwant\n%v", got, want)
					}
				})
			}
		})
	}
}

// goldenFiles returns the contents of every testdata/*.pb and *.json file.
func goldenFiles(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, pattern := range []string{"*.pb", "*.json"} {
		paths, err := filepath.Glob(filepath.Join("testdata", pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(p)] = b
		}
	}
	if len(out) == 0 {
		t.Fatal("no golden files in testdata/; run go test -run TestGolden -update")
	}
	return out
}
