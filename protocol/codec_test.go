package protocol_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// payload formats of the decode tables. A case with format fmtJSON or fmtPB
// and no content type runs twice: sniffed and with the matching content type.
const (
	fmtRaw  = ""
	fmtJSON = "json"
	fmtPB   = "pb"
)

func contentTypeOf(format string) string {
	switch format {
	case fmtJSON:
		return protocol.ContentTypeJSON
	case fmtPB:
		return protocol.ContentTypeProtobuf
	}
	return ""
}

type decodeCase struct {
	name        string
	payload     []byte
	format      string // fmtJSON, fmtPB or fmtRaw
	contentType string // when set, the only content type tried
	device      string // the topic's device; testDevice when empty
}

// variants returns the content types a case is decoded with, by subtest name.
func (c decodeCase) variants() [][2]string {
	if c.contentType != "" || c.format == fmtRaw {
		return [][2]string{{"as-given", c.contentType}}
	}
	return [][2]string{{"sniffed"}, {"content-type", contentTypeOf(c.format)}}
}

func (c decodeCase) topicDevice() string {
	if c.device == "" {
		return testDevice
	}
	return c.device
}

// manyPointsPB is a protobuf batch of n minimal valid points.
func manyPointsPB(t testing.TB, n int) []byte {
	pts := make([]*outpostv1.Point, n)
	for i := range pts {
		pts[i] = numPt("a", ts0, 1)
	}
	return pbOf(t, batch(testDevice, 1, pts...))
}

func manyPointsJSON(n int) []byte {
	pts := make([]string, n)
	for i := range pts {
		pts[i] = jp("a", "1764067200000", "1")
	}
	return []byte(jbatch(pts...))
}

func TestDecodeTelemetryRejects(t *testing.T) {
	pb := func(b *outpostv1.TelemetryBatch) []byte { return pbOf(t, b) }
	one := func(p *outpostv1.Point) []byte { return pb(batch(testDevice, 1, p)) }
	js := func(s string) []byte { return []byte(s) }
	maxTS := testNow.Add(protocol.MaxClockSkew).UnixMilli()

	// A valid protobuf batch preceded by an unknown group (field 15), so
	// that it starts with '{' and is sniffed as JSON.
	groupFirst := protowire.AppendTag(nil, 15, protowire.StartGroupType)
	groupFirst = protowire.AppendTag(groupFirst, 15, protowire.EndGroupType)
	groupFirst = append(groupFirst, pb(batch(testDevice, 1, numPt("a", ts0, 1)))...)

	tests := []struct {
		decodeCase
		want protocol.Code
	}{
		// Size.
		{decodeCase{name: "oversize json", payload: bytes.Repeat([]byte(" "), protocol.MaxPayloadBytes+1), format: fmtJSON}, protocol.CodeTooLarge},
		{decodeCase{name: "oversize protobuf", payload: make([]byte, protocol.MaxPayloadBytes+1), format: fmtPB}, protocol.CodeTooLarge},
		{decodeCase{name: "oversize before content type check", payload: make([]byte, protocol.MaxPayloadBytes+1), contentType: "text/plain"}, protocol.CodeTooLarge},

		// Malformed protobuf.
		{decodeCase{name: "protobuf bad tag", payload: []byte{0xff}, format: fmtPB}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf truncated length", payload: []byte{0x0a, 0x05, 'p'}, format: fmtPB}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf truncated varint", payload: []byte{0x10, 0x80}, format: fmtPB}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf invalid utf-8 device", payload: []byte{0x0a, 0x01, 0xff}, format: fmtPB}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf field number zero", payload: []byte{0x00, 0x00}, format: fmtPB}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf sent as json", payload: one(numPt("a", ts0, 1)), contentType: protocol.ContentTypeJSON}, protocol.CodeMalformed},
		{decodeCase{name: "protobuf starting with a group sniffed as json", payload: groupFirst}, protocol.CodeMalformed},

		// Malformed JSON.
		{decodeCase{name: "json truncated", payload: js(`{"device":`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json bad syntax", payload: js(`{"points":[}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json not an object", payload: js(`[1,2]`), contentType: protocol.ContentTypeJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json seq_first string", payload: js(`{"seq_first":"1","points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json seq_first negative", payload: js(`{"seq_first":-1,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json seq_first above 2^64", payload: js(`{"seq_first":18446744073709551616,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json NaN literal", payload: js(jbatch(jp("a", "1764067200000", "NaN"))), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json sent as protobuf", payload: js(jbatch(goodJP)), contentType: protocol.ContentTypeProtobuf}, protocol.CodeMalformed},
		{decodeCase{name: "json unknown batch field", payload: js(`{"device":"pump-7","seq_first":1,"points":[` + goodJP + `],"extra":1}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json unknown point field", payload: js(jbatch(`{"sensor":"a","ts":1764067200000,"value":1,"unit":"C"}`)), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json trailing object", payload: js(jbatch(goodJP) + `{}`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json trailing garbage", payload: js(jbatch(goodJP) + ` x`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json trailing number", payload: js(jbatch(goodJP) + ` 1`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json trailing close bracket", payload: js(jbatch(goodJP) + `]`), format: fmtJSON}, protocol.CodeMalformed},
		{decodeCase{name: "json trailing close brace", payload: js(jbatch(goodJP) + ` }}`), format: fmtJSON}, protocol.CodeMalformed},

		// Points count.
		{decodeCase{name: "empty payload", payload: nil}, protocol.CodeEmptyBatch},
		{decodeCase{name: "json empty points", payload: js(jbatch()), format: fmtJSON}, protocol.CodeEmptyBatch},
		{decodeCase{name: "json null points", payload: js(`{"seq_first":1,"points":null}`), format: fmtJSON}, protocol.CodeEmptyBatch},
		{decodeCase{name: "json missing points", payload: js(`{"seq_first":1}`), format: fmtJSON}, protocol.CodeEmptyBatch},
		{decodeCase{name: "protobuf empty points", payload: pb(batch(testDevice, 1)), format: fmtPB}, protocol.CodeEmptyBatch},
		{decodeCase{name: "json too many points", payload: manyPointsJSON(protocol.MaxPointsPerBatch + 1), format: fmtJSON}, protocol.CodeTooManyPoints},
		{decodeCase{name: "protobuf too many points", payload: manyPointsPB(t, protocol.MaxPointsPerBatch+1), format: fmtPB}, protocol.CodeTooManyPoints},

		// Sequence numbers.
		{decodeCase{name: "json seq_first 0", payload: js(`{"seq_first":0,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeBadSeq},
		{decodeCase{name: "json seq_first missing", payload: js(`{"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeBadSeq},
		{decodeCase{name: "protobuf seq_first 0", payload: pb(batch(testDevice, 0, numPt("a", ts0, 1))), format: fmtPB}, protocol.CodeBadSeq},
		{decodeCase{name: "protobuf seq overflow by one", payload: pb(batch(testDevice, math.MaxInt64-1, numPt("a", ts0, 1), numPt("a", ts0, 2))), format: fmtPB}, protocol.CodeBadSeq},
		{decodeCase{name: "protobuf seq_first max int64", payload: pb(batch(testDevice, math.MaxInt64, numPt("a", ts0, 1))), format: fmtPB}, protocol.CodeBadSeq},
		{decodeCase{name: "protobuf seq_first max uint64", payload: pb(batch(testDevice, math.MaxUint64, numPt("a", ts0, 1))), format: fmtPB}, protocol.CodeBadSeq},
		{decodeCase{name: "json seq_first max uint64", payload: js(`{"seq_first":18446744073709551615,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeBadSeq},

		// Sensor names.
		{decodeCase{name: "name empty", payload: one(numPt("", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name too long", payload: one(numPt(strings.Repeat("a", protocol.MaxNameLen+1), ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name with space", payload: one(numPt("tank level", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name with plus", payload: one(numPt("line1/+/temp", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name with hash", payload: one(numPt("line1/#", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name non-ascii", payload: one(numPt("température", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name with NUL", payload: one(numPt("a\x00b", ts0, 1)), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "name bad in second point", payload: pb(batch(testDevice, 1, numPt("ok", ts0, 1), numPt("not ok", ts0, 1))), format: fmtPB}, protocol.CodeBadName},
		{decodeCase{name: "json name empty", payload: js(jbatch(jp("", "1764067200000", "1"))), format: fmtJSON}, protocol.CodeBadName},
		{decodeCase{name: "json name null", payload: js(jbatch(`{"sensor":null,"ts":1764067200000,"value":1}`)), format: fmtJSON}, protocol.CodeBadName},
		{decodeCase{name: "json name non-ascii", payload: js(jbatch(jp("température", "1764067200000", "1"))), format: fmtJSON}, protocol.CodeBadName},
		{decodeCase{name: "json name with hash", payload: js(jbatch(jp("#", "1764067200000", "1"))), format: fmtJSON}, protocol.CodeBadName},

		// Values. JSON cannot carry NaN or Inf, so those are protobuf only.
		{decodeCase{name: "NaN", payload: one(numPt("a", ts0, math.NaN())), format: fmtPB}, protocol.CodeBadValue},
		{decodeCase{name: "+Inf", payload: one(numPt("a", ts0, math.Inf(1))), format: fmtPB}, protocol.CodeBadValue},
		{decodeCase{name: "-Inf", payload: one(numPt("a", ts0, math.Inf(-1))), format: fmtPB}, protocol.CodeBadValue},
		{decodeCase{name: "string too long", payload: one(strPt("a", ts0, strings.Repeat("x", protocol.MaxStringValueLen+1))), format: fmtPB}, protocol.CodeBadValue},
		{decodeCase{name: "json string too long", payload: js(jbatch(jp("a", "1764067200000", `"`+strings.Repeat("x", protocol.MaxStringValueLen+1)+`"`))), format: fmtJSON}, protocol.CodeBadValue},
		{decodeCase{name: "no value", payload: one(&outpostv1.Point{Sensor: "a", TsUnixMs: ts0}), format: fmtPB}, protocol.CodeBadValue},
		{decodeCase{name: "json value missing", payload: js(jbatch(`{"sensor":"a","ts":1764067200000}`)), format: fmtJSON}, protocol.CodeBadValue},
		{decodeCase{name: "json value null", payload: js(jbatch(jp("a", "1764067200000", "null"))), format: fmtJSON}, protocol.CodeBadValue},
		{decodeCase{name: "json value array", payload: js(jbatch(jp("a", "1764067200000", "[1]"))), format: fmtJSON}, protocol.CodeBadValue},
		{decodeCase{name: "json value object", payload: js(jbatch(jp("a", "1764067200000", `{"v":1}`))), format: fmtJSON}, protocol.CodeBadValue},
		{decodeCase{name: "json value out of float range", payload: js(jbatch(jp("a", "1764067200000", "1e400"))), format: fmtJSON}, protocol.CodeBadValue},

		// Timestamps.
		{decodeCase{name: "ts before 2000", payload: one(numPt("a", 946684799999, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "ts zero", payload: one(numPt("a", 0, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "ts negative", payload: one(numPt("a", math.MinInt64, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "ts in seconds", payload: one(numPt("a", ts0/1000, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "ts more than a day ahead", payload: one(numPt("a", maxTS+1, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "ts max int64", payload: one(numPt("a", math.MaxInt64, 1)), format: fmtPB}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts before 2000", payload: js(jbatch(jp("a", `"1999-12-31T23:59:59.999Z"`, "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts more than a day ahead", payload: js(jbatch(jp("a", fmt.Sprint(maxTS+1), "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts missing", payload: js(jbatch(`{"sensor":"a","value":1}`)), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts null", payload: js(jbatch(jp("a", "null", "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts fractional", payload: js(jbatch(jp("a", "1764067200000.5", "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts not rfc 3339", payload: js(jbatch(jp("a", `"25 Nov 2025 10:40"`, "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},
		{decodeCase{name: "json ts bool", payload: js(jbatch(jp("a", "true", "1"))), format: fmtJSON}, protocol.CodeBadTimestamp},

		// Device.
		{decodeCase{name: "protobuf device mismatch", payload: pb(batch("pump-8", 1, numPt("a", ts0, 1))), format: fmtPB}, protocol.CodeDeviceMismatch},
		{decodeCase{name: "protobuf device prefix of topic device", payload: pb(batch("pump-7", 1, numPt("a", ts0, 1))), format: fmtPB, device: "pump-70"}, protocol.CodeDeviceMismatch},
		{decodeCase{name: "json device mismatch", payload: js(`{"device":"pump-70","seq_first":1,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeDeviceMismatch},
		{decodeCase{name: "json device differs in case", payload: js(`{"device":"PUMP-7","seq_first":1,"points":[` + goodJP + `]}`), format: fmtJSON}, protocol.CodeDeviceMismatch},

		// Content type.
		{decodeCase{name: "content type text/plain", payload: js(jbatch(goodJP)), contentType: "text/plain"}, protocol.CodeMalformed},
		{decodeCase{name: "content type xml", payload: js(jbatch(goodJP)), contentType: "application/xml"}, protocol.CodeMalformed},
		{decodeCase{name: "content type octet-stream", payload: one(numPt("a", ts0, 1)), contentType: "application/octet-stream"}, protocol.CodeMalformed},
	}
	for _, tc := range tests {
		for _, v := range tc.variants() {
			t.Run(tc.name+"/"+v[0], func(t *testing.T) {
				b, err := protocol.DecodeTelemetry(tc.payload, v[1], tc.topicDevice(), testNow)
				checkCode(t, err, tc.want)
				if b != nil {
					t.Errorf("DecodeTelemetry returned a batch with the error: %v", b)
				}
				var pe *protocol.Error
				if !errors.As(err, &pe) || pe.Detail == "" {
					t.Errorf("error %v is not a *protocol.Error with a detail", err)
				}
			})
		}
	}
}

func TestDecodeTelemetryAccepts(t *testing.T) {
	maxTS := testNow.Add(protocol.MaxClockSkew).UnixMilli()
	one := func(p *outpostv1.Point) *outpostv1.TelemetryBatch { return batch(testDevice, 1, p) }
	validJSON := jbatch(goodJP)
	padded := validJSON + strings.Repeat(" ", protocol.MaxPayloadBytes-len(validJSON))

	// A protobuf batch with an unknown field (number 9) in the batch and in
	// the point, as a newer agent might send; it must be accepted and kept.
	withUnknown := protowire.AppendTag(nil, 99, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 1)
	pointUnknown := append(pbOf(t, numPt("a", ts0, 1)), withUnknown...)
	withUnknown = protowire.AppendTag(withUnknown, 3, protowire.BytesType)
	withUnknown = protowire.AppendBytes(withUnknown, pointUnknown)
	withUnknown = protowire.AppendTag(withUnknown, 2, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 1)
	wantUnknown := &outpostv1.TelemetryBatch{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(withUnknown, wantUnknown); err != nil {
		t.Fatal(err)
	}
	wantUnknown.Device = testDevice

	tests := []struct {
		decodeCase
		want *outpostv1.TelemetryBatch
	}{
		// Limits, at the boundary.
		{decodeCase{name: "payload of exactly MaxPayloadBytes", payload: []byte(padded), format: fmtJSON}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "exactly MaxPointsPerBatch json", payload: manyPointsJSON(protocol.MaxPointsPerBatch), format: fmtJSON}, nil},
		{decodeCase{name: "exactly MaxPointsPerBatch protobuf", payload: manyPointsPB(t, protocol.MaxPointsPerBatch), format: fmtPB}, nil},
		{decodeCase{name: "name of MaxNameLen", payload: pbOf(t, one(numPt(strings.Repeat("n", protocol.MaxNameLen), ts0, 1))), format: fmtPB}, one(numPt(strings.Repeat("n", protocol.MaxNameLen), ts0, 1))},
		{decodeCase{name: "string of MaxStringValueLen", payload: pbOf(t, one(strPt("s", ts0, strings.Repeat("x", protocol.MaxStringValueLen)))), format: fmtPB}, one(strPt("s", ts0, strings.Repeat("x", protocol.MaxStringValueLen)))},
		{decodeCase{name: "ts at 2000-01-01", payload: pbOf(t, one(numPt("a", 946684800000, 1))), format: fmtPB}, one(numPt("a", 946684800000, 1))},
		{decodeCase{name: "ts exactly a day ahead", payload: pbOf(t, one(numPt("a", maxTS, 1))), format: fmtPB}, one(numPt("a", maxTS, 1))},
		{decodeCase{name: "seq_first largest allowed (MaxInt64-n)", payload: pbOf(t, batch(testDevice, math.MaxInt64-1, numPt("a", ts0, 1))), format: fmtPB}, batch(testDevice, math.MaxInt64-1, numPt("a", ts0, 1))},

		// JSON forms.
		{decodeCase{name: "json rfc 3339 ts", payload: []byte(jbatch(jp("a", `"2025-11-25T10:40:00.123Z"`, "1"))), format: fmtJSON}, one(numPt("a", ts0+123, 1))},
		{decodeCase{name: "json rfc 3339 ts with offset", payload: []byte(jbatch(jp("a", `"2025-11-25T12:40:00+02:00"`, "1"))), format: fmtJSON}, one(numPt("a", ts0, 1))},
		{decodeCase{name: "json exponent value", payload: []byte(jbatch(jp("a", "1764067200000", "-2.5e3"))), format: fmtJSON}, one(numPt("a", ts0, -2500))},
		{decodeCase{name: "json escaped string", payload: []byte(jbatch(jp("a", "1764067200000", `"\u00fcber\n"`))), format: fmtJSON}, one(strPt("a", ts0, "über\n"))},
		{decodeCase{name: "json device omitted", payload: []byte(`{"seq_first":1,"points":[` + goodJP + `]}`), format: fmtJSON}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "json leading and trailing whitespace", payload: []byte("\r\n\t " + validJSON + "\n"), format: fmtJSON}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "protobuf unknown fields dropped", payload: withUnknown, format: fmtPB}, wantUnknown},

		// Content types.
		{decodeCase{name: "content type upper case", payload: []byte(validJSON), contentType: "APPLICATION/JSON"}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "content type padded", payload: []byte(validJSON), contentType: " application/json "}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "content type +json", payload: []byte(validJSON), contentType: "application/vnd.outpost.telemetry+json"}, one(numPt("temperature", ts0, 21.5))},
		{decodeCase{name: "content type application/protobuf", payload: pbOf(t, one(numPt("a", ts0, 1))), contentType: "application/protobuf"}, one(numPt("a", ts0, 1))},
		{decodeCase{name: "content type vnd.google.protobuf", payload: pbOf(t, one(numPt("a", ts0, 1))), contentType: "application/vnd.google.protobuf"}, one(numPt("a", ts0, 1))},
		{decodeCase{name: "content type with charset", payload: []byte(validJSON), contentType: "application/json; charset=utf-8"}, one(numPt("temperature", ts0, 21.5))},
	}
	for _, tc := range tests {
		for _, v := range tc.variants() {
			t.Run(tc.name+"/"+v[0], func(t *testing.T) {
				b, err := protocol.DecodeTelemetry(tc.payload, v[1], tc.topicDevice(), testNow)
				if err != nil {
					t.Fatalf("DecodeTelemetry: %v", err)
				}
				if b.GetDevice() != tc.topicDevice() {
					t.Errorf("Device = %q, want %q", b.GetDevice(), tc.topicDevice())
				}
				if tc.want != nil && !proto.Equal(b, tc.want) {
					t.Errorf("DecodeTelemetry =\n%v\nwant\n%v", b, tc.want)
				}
			})
		}
	}
}

func TestEncodeTelemetryJSONRejectsUnencodable(t *testing.T) {
	tests := []struct {
		name  string
		batch *outpostv1.TelemetryBatch
	}{
		{"no value", batch(testDevice, 1, &outpostv1.Point{Sensor: "a", TsUnixMs: ts0})},
		{"NaN", batch(testDevice, 1, numPt("a", ts0, math.NaN()))},
		{"Inf", batch(testDevice, 1, numPt("a", ts0, math.Inf(1)))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := protocol.EncodeTelemetryJSON(tc.batch)
			checkCode(t, err, protocol.CodeBadValue)
		})
	}
}

func TestValidateTelemetryNil(t *testing.T) {
	checkCode(t, protocol.ValidateTelemetry(nil, testNow), protocol.CodeEmptyBatch)
}

func TestStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		st   *outpostv1.Status
	}{
		{"online", &outpostv1.Status{State: outpostv1.Status_STATE_ONLINE, TsUnixMs: ts0, AgentVersion: "1.4.2"}},
		{"offline", &outpostv1.Status{State: outpostv1.Status_STATE_OFFLINE, TsUnixMs: ts0}},
		{"online without ts", &outpostv1.Status{State: outpostv1.Status_STATE_ONLINE, AgentVersion: "0.0.0-dev+abc"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := protocol.EncodeStatus(tc.st)
			if err != nil {
				t.Fatalf("EncodeStatus: %v", err)
			}
			got, err := protocol.DecodeStatus(b)
			if err != nil {
				t.Fatalf("DecodeStatus: %v", err)
			}
			if !proto.Equal(got, tc.st) {
				t.Errorf("DecodeStatus(EncodeStatus(x)) = %v, want %v", got, tc.st)
			}
		})
	}
}

func TestDecodeStatusJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    *outpostv1.Status
	}{
		{"online", `{"state":"online"}`, &outpostv1.Status{State: outpostv1.Status_STATE_ONLINE}},
		{"offline with all fields", `{"state":"offline","ts":1764067200000,"agent_version":"1.4.2"}`,
			&outpostv1.Status{State: outpostv1.Status_STATE_OFFLINE, TsUnixMs: ts0, AgentVersion: "1.4.2"}},
		{"state in upper case", `{"state":"ONLINE"}`, &outpostv1.Status{State: outpostv1.Status_STATE_ONLINE}},
		{"leading whitespace", "\n {\"state\":\"online\"}", &outpostv1.Status{State: outpostv1.Status_STATE_ONLINE}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.DecodeStatus([]byte(tc.payload))
			if err != nil {
				t.Fatalf("DecodeStatus: %v", err)
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("DecodeStatus = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeStatusRejects(t *testing.T) {
	unknownState := protowire.AppendTag(nil, 1, protowire.VarintType)
	unknownState = protowire.AppendVarint(unknownState, 99)
	tests := []struct {
		name    string
		payload []byte
		want    protocol.Code
	}{
		{"json unknown state", []byte(`{"state":"sleeping"}`), protocol.CodeMalformed},
		{"json empty state", []byte(`{"state":""}`), protocol.CodeMalformed},
		{"json missing state", []byte(`{}`), protocol.CodeMalformed},
		{"json enum name", []byte(`{"state":"STATE_ONLINE"}`), protocol.CodeMalformed},
		{"json numeric state", []byte(`{"state":1}`), protocol.CodeMalformed},
		{"json truncated", []byte(`{"state":"online"`), protocol.CodeMalformed},
		{"json trailing data", []byte(`{"state":"online"} x`), protocol.CodeMalformed},
		{"oversize", bytes.Repeat([]byte(" "), protocol.MaxPayloadBytes+1), protocol.CodeTooLarge},
		{"protobuf bad tag", []byte{0xff}, protocol.CodeMalformed},
		{"protobuf invalid utf-8 version", []byte{0x1a, 0x01, 0xff}, protocol.CodeMalformed},
		{"protobuf unspecified state", pbOf(t, &outpostv1.Status{TsUnixMs: ts0}), protocol.CodeMalformed},
		{"protobuf unknown state", unknownState, protocol.CodeMalformed},
		{"empty payload", nil, protocol.CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := protocol.DecodeStatus(tc.payload)
			checkCode(t, err, tc.want)
			if st != nil {
				t.Errorf("DecodeStatus returned %v with the error", st)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	tooLarge := &protocol.Error{Code: protocol.CodeTooLarge, Detail: "big"}
	tests := []struct {
		name string
		err  error
		want protocol.Code
	}{
		{"nil", nil, ""},
		{"plain error", errors.New("boom"), ""},
		{"bare code", protocol.CodeBadName, protocol.CodeBadName},
		{"*Error", tooLarge, protocol.CodeTooLarge},
		{"wrapped *Error", fmt.Errorf("decoding: %w", tooLarge), protocol.CodeTooLarge},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", tooLarge)), protocol.CodeTooLarge},
		{"wrapped code", fmt.Errorf("x: %w", protocol.CodeBadSeq), protocol.CodeBadSeq},
		{"joined", errors.Join(errors.New("other"), tooLarge), protocol.CodeTooLarge},
		{"multiple %w", fmt.Errorf("%w; %w", errors.New("other"), tooLarge), protocol.CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := protocol.CodeOf(tc.err)
			if got != tc.want {
				t.Errorf("CodeOf(%v) = %q, want %q", tc.err, got, tc.want)
			}
			if tc.want != "" && !errors.Is(tc.err, tc.want) {
				t.Errorf("errors.Is(%v, %s) = false", tc.err, tc.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&protocol.Error{Code: protocol.CodeBadName}, "bad_name"},
		{&protocol.Error{Code: protocol.CodeBadName, Detail: "x"}, "bad_name: x"},
		{protocol.CodeBadSeq, "bad_seq"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
	if errors.Is(&protocol.Error{Code: protocol.CodeBadName}, protocol.CodeBadSeq) {
		t.Error("an error with CodeBadName matches CodeBadSeq")
	}
}
