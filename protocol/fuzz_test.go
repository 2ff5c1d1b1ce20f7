package protocol_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
	"google.golang.org/protobuf/proto"
)

// fuzzContentTypes are the content types FuzzDecodeTelemetry picks from.
var fuzzContentTypes = []string{"", protocol.ContentTypeProtobuf, protocol.ContentTypeJSON, "application/vnd.x+json", "text/plain"}

// FuzzDecodeTelemetry checks that DecodeTelemetry never panics, that every
// rejection carries a Code, and that every accepted batch is valid, belongs to
// the topic's device and survives re-encoding in both wire formats.
func FuzzDecodeTelemetry(f *testing.F) {
	for name, b := range goldenFiles(f) {
		ct := uint8(2) // JSON
		if strings.HasSuffix(name, ".pb") {
			ct = 1
		}
		f.Add(b, uint8(0))
		f.Add(b, ct)
	}
	for _, bad := range [][]byte{
		nil,
		[]byte("{"),
		[]byte(`{"seq_first":0,"points":[]}`),
		[]byte(jbatch(goodJP) + "]"),
		[]byte(jbatch(jp("a", `"2025-11-25T10:40:00Z"`, `"s"`))),
		[]byte(jbatch(jp("bad name", "1764067200000", "1"))),
		{0xff},
		{0x0a, 0x05, 'p'},
		pbOf(f, batch(testDevice, 1, numPt("a", ts0, math.NaN()))),
		pbOf(f, batch("pump-8", 1, numPt("a", ts0, 1))),
		pbOf(f, batch(testDevice, math.MaxInt64, numPt("a", ts0, 1))),
	} {
		f.Add(bad, uint8(0))
	}

	f.Fuzz(func(t *testing.T, payload []byte, ctIndex uint8) {
		ct := fuzzContentTypes[int(ctIndex)%len(fuzzContentTypes)]
		b, err := protocol.DecodeTelemetry(payload, ct, testDevice, testNow)
		if err != nil {
			if b != nil {
				t.Fatalf("DecodeTelemetry returned a batch with error %v", err)
			}
			if protocol.CodeOf(err) == "" {
				t.Fatalf("error %v carries no Code", err)
			}
			return
		}
		if b == nil {
			t.Fatal("DecodeTelemetry returned neither a batch nor an error")
		}
		if err := protocol.ValidateTelemetry(b, testNow); err != nil {
			t.Fatalf("accepted batch fails ValidateTelemetry: %v", err)
		}
		if b.GetDevice() != testDevice {
			t.Fatalf("Device = %q, want %q", b.GetDevice(), testDevice)
		}
		if decodedAsJSON(payload, ct) && !json.Valid(payload) {
			t.Fatalf("accepted invalid JSON %q", payload)
		}

		// Protobuf round trip: exact, unknown fields included.
		pb, err := protocol.EncodeTelemetry(b)
		if err != nil {
			t.Fatalf("EncodeTelemetry of an accepted batch: %v", err)
		}
		for _, ct2 := range []string{protocol.ContentTypeProtobuf, ""} {
			checkRedecode(t, pb, ct2, b)
		}

		// JSON round trip: JSON carries no unknown protobuf fields.
		js, err := protocol.EncodeTelemetryJSON(b)
		if err != nil {
			t.Fatalf("EncodeTelemetryJSON of an accepted batch: %v", err)
		}
		known := withoutUnknown(t, b)
		for _, ct2 := range []string{protocol.ContentTypeJSON, ""} {
			checkRedecode(t, js, ct2, known)
		}
	})
}

// decodedAsJSON reports whether DecodeTelemetry reads payload as JSON.
func decodedAsJSON(payload []byte, contentType string) bool {
	if contentType != "" {
		return contentType == protocol.ContentTypeJSON || strings.HasSuffix(contentType, "+json")
	}
	p := bytes.TrimLeft(payload, " \t\r\n")
	return len(p) > 0 && p[0] == '{'
}

// checkRedecode fails t unless payload decodes to want. A re-encoding may
// outgrow MaxPayloadBytes (JSON is wordier, and the device is filled in), in
// which case only CodeTooLarge is acceptable.
func checkRedecode(t *testing.T, payload []byte, contentType string, want *outpostv1.TelemetryBatch) {
	t.Helper()
	got, err := protocol.DecodeTelemetry(payload, contentType, testDevice, testNow)
	if len(payload) > protocol.MaxPayloadBytes {
		if protocol.CodeOf(err) != protocol.CodeTooLarge {
			t.Fatalf("re-encoding of %d bytes: got %v, want %s", len(payload), err, protocol.CodeTooLarge)
		}
		return
	}
	if err != nil {
		t.Fatalf("decoding the re-encoding (content type %q) %q: %v", contentType, payload, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("re-encoding (content type %q) decodes to\n%v\nwant\n%v", contentType, got, want)
	}
}

// withoutUnknown returns a copy of b without unknown fields.
func withoutUnknown(t *testing.T, b *outpostv1.TelemetryBatch) *outpostv1.TelemetryBatch {
	t.Helper()
	raw, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var out outpostv1.TelemetryBatch
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// FuzzParseTopic checks that ParseTopic never panics, fails only with
// CodeBadTopic or CodeBadDeviceID, and that what it accepts is exactly the
// topic rebuilt from its parts, usable by that device and by no other.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"outpost/v1/devices/pump-7/telemetry",
		"outpost/v1/devices/pump-7/status",
		"outpost/v1/devices/pump-7/#",
		"outpost/v1/devices/+/telemetry",
		"outpost/v1/devices/pump-7/telemetry/extra",
		"outpost/v1/devices/pump-7",
		"outpost/v1/devices/",
		"$aws/things/pump-7/shadow/update",
		"$share/g/outpost/v1/devices/pump-7/telemetry",
		"pump-7",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		id, kind, err := protocol.ParseTopic(topic)

		// The input read as a device id must round-trip through the builders.
		if protocol.ValidDeviceID(topic) == nil {
			for _, k := range []struct {
				build func(string) string
				kind  string
			}{{protocol.TelemetryTopic, protocol.KindTelemetry}, {protocol.StatusTopic, protocol.KindStatus}} {
				gotID, gotKind, err := protocol.ParseTopic(k.build(topic))
				if err != nil || gotID != topic || gotKind != k.kind {
					t.Fatalf("ParseTopic(%q) = %q, %q, %v", k.build(topic), gotID, gotKind, err)
				}
			}
		}

		if err != nil {
			if c := protocol.CodeOf(err); c != protocol.CodeBadTopic && c != protocol.CodeBadDeviceID {
				t.Fatalf("ParseTopic(%q) failed with code %q: %v", topic, c, err)
			}
			if id != "" || kind != "" {
				t.Fatalf("ParseTopic(%q) returned %q, %q with error %v", topic, id, kind, err)
			}
			return
		}
		if err := protocol.ValidDeviceID(id); err != nil {
			t.Fatalf("ParseTopic(%q) accepted device id %q: %v", topic, id, err)
		}
		if kind == "" || strings.Contains(kind, "/") {
			t.Fatalf("ParseTopic(%q) returned kind %q", topic, kind)
		}
		if rebuilt := protocol.TopicPrefix + id + "/" + kind; rebuilt != topic {
			t.Fatalf("ParseTopic(%q) = %q, %q, which rebuilds as %q", topic, id, kind, rebuilt)
		}
		switch kind {
		case protocol.KindTelemetry:
			if protocol.TelemetryTopic(id) != topic {
				t.Fatalf("TelemetryTopic(%q) = %q, want %q", id, protocol.TelemetryTopic(id), topic)
			}
		case protocol.KindStatus:
			if protocol.StatusTopic(id) != topic {
				t.Fatalf("StatusTopic(%q) = %q, want %q", id, protocol.StatusTopic(id), topic)
			}
		}
		if !protocol.DeviceMayUse(id, topic) {
			t.Fatalf("DeviceMayUse(%q, %q) = false for its own topic", id, topic)
		}
		// No other device may use it, in particular none whose id extends
		// or truncates this one.
		for _, other := range []string{id + "0", id[:len(id)-1], "x" + id} {
			if other != id && protocol.DeviceMayUse(other, topic) {
				t.Fatalf("DeviceMayUse(%q, %q) = true, but the topic is %q's", other, topic, id)
			}
		}
	})
}
