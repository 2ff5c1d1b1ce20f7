package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"strings"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"google.golang.org/protobuf/proto"
)

// Content types carried in the MQTT v5 content-type property.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
)

// EncodeTelemetry encodes b as protobuf, the agent's wire format, in the
// compact form: each distinct sensor name is written once in sensor_table
// and timestamps are deltas from the first point's. b is not modified.
func EncodeTelemetry(b *outpostv1.TelemetryBatch) ([]byte, error) {
	out, err := proto.Marshal(compact(b))
	if err != nil {
		return nil, fmt.Errorf("encoding telemetry batch: %w", err)
	}
	return out, nil
}

// compact returns the compact form of a batch whose points name their
// sensors and timestamps in full.
func compact(b *outpostv1.TelemetryBatch) *outpostv1.TelemetryBatch {
	pts := b.GetPoints()
	c := &outpostv1.TelemetryBatch{Device: b.GetDevice(), SeqFirst: b.GetSeqFirst(), Points: make([]*outpostv1.Point, len(pts))}
	if len(pts) > 0 {
		c.TsBaseMs = pts[0].GetTsUnixMs()
	}
	refs := make(map[string]uint32)
	prevTS := c.TsBaseMs
	for i, p := range pts {
		ref, ok := refs[p.GetSensor()]
		if !ok {
			c.SensorTable = append(c.SensorTable, p.GetSensor())
			ref = uint32(len(c.SensorTable))
			refs[p.GetSensor()] = ref
		}
		cp := &outpostv1.Point{SensorRef: ref, TsDeltaMs: p.GetTsUnixMs() - prevTS, Value: p.GetValue()}
		prevTS = p.GetTsUnixMs()
		if n, ok := p.GetValue().(*outpostv1.Point_Num); ok {
			if d, exp, ok := toDecimal(n.Num); ok {
				cp.Value, cp.DecimalExp = &outpostv1.Point_Decimal{Decimal: d}, exp
			}
		}
		c.Points[i] = cp
	}
	return c
}

// maxDecimalExp is the largest power of ten a decimal value is divided by.
const maxDecimalExp = 9

var pow10 = [maxDecimalExp + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// toDecimal finds the smallest exponent e such that v is exactly d / 10^e
// for an integer d small enough to be exact in a float64, so that the
// receiver reproduces v bit for bit.
func toDecimal(v float64) (int64, uint32, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v == 0 && math.Signbit(v) {
		return 0, 0, false
	}
	for e, p := range pow10 {
		s := math.Round(v * p)
		if math.Abs(s) > 1<<53 {
			return 0, 0, false
		}
		if s/p == v {
			return int64(s), uint32(e), true
		}
	}
	return 0, 0, false
}

// expand resolves the compact fields of a decoded batch in place, so that
// every point names its sensor and time in full and the compact fields are
// empty.
func expand(b *outpostv1.TelemetryBatch) error {
	table := b.GetSensorTable()
	if len(table) > MaxPointsPerBatch {
		return errorf(CodeTooManyPoints, "sensor table has %d names, the limit is %d", len(table), MaxPointsPerBatch)
	}
	prevTS := b.GetTsBaseMs()
	for i, p := range b.GetPoints() {
		if p == nil {
			return errorf(CodeMalformed, "point %d is empty", i)
		}
		if ref := p.GetSensorRef(); ref != 0 {
			if p.GetSensor() != "" {
				return errorf(CodeBadName, "point %d has both sensor and sensor_ref", i)
			}
			if int(ref) > len(table) {
				return errorf(CodeBadName, "point %d: sensor_ref %d is outside the sensor table of %d", i, ref, len(table))
			}
			p.Sensor, p.SensorRef = table[ref-1], 0
		}
		if dec, ok := p.GetValue().(*outpostv1.Point_Decimal); ok {
			exp := p.GetDecimalExp()
			if exp > maxDecimalExp || math.Abs(float64(dec.Decimal)) > 1<<53 {
				return errorf(CodeBadValue, "point %d: decimal %d with exponent %d is out of range", i, dec.Decimal, exp)
			}
			p.Value, p.DecimalExp = &outpostv1.Point_Num{Num: float64(dec.Decimal) / pow10[exp]}, 0
		} else if p.GetDecimalExp() != 0 {
			return errorf(CodeBadValue, "point %d: decimal_exp without a decimal value", i)
		}
		if d := p.GetTsDeltaMs(); d != 0 || p.GetTsUnixMs() == 0 {
			if p.GetTsUnixMs() != 0 {
				return errorf(CodeBadTimestamp, "point %d has both ts_unix_ms and ts_delta_ms", i)
			}
			ts := prevTS + d
			if (d > 0 && ts < prevTS) || (d < 0 && ts > prevTS) {
				return errorf(CodeBadTimestamp, "point %d: timestamp delta overflows", i)
			}
			p.TsUnixMs, p.TsDeltaMs = ts, 0
		}
		prevTS = p.GetTsUnixMs()
	}
	b.SensorTable, b.TsBaseMs = nil, 0
	return nil
}

// jsonBatch is the JSON form of a TelemetryBatch, meant for third-party
// devices and shell scripts:
//
//	{"device":"pump-7","seq_first":1,
//	 "points":[{"sensor":"temperature","ts":1764067200000,"value":21.5}]}
//
// ts is milliseconds since the Unix epoch or an RFC 3339 string; value is a
// JSON number, string or boolean.
type jsonBatch struct {
	Device   string      `json:"device,omitempty"`
	SeqFirst uint64      `json:"seq_first"`
	Points   []jsonPoint `json:"points"`
}

type jsonPoint struct {
	Sensor string          `json:"sensor"`
	TS     json.RawMessage `json:"ts"`
	Value  json.RawMessage `json:"value"`
}

// EncodeTelemetryJSON encodes b in the JSON form DecodeTelemetry accepts.
func EncodeTelemetryJSON(b *outpostv1.TelemetryBatch) ([]byte, error) {
	jb := jsonBatch{Device: b.GetDevice(), SeqFirst: b.GetSeqFirst(), Points: make([]jsonPoint, 0, len(b.GetPoints()))}
	for _, p := range b.GetPoints() {
		var v any
		switch x := p.GetValue().(type) {
		case *outpostv1.Point_Num:
			v = x.Num
		case *outpostv1.Point_Str:
			v = x.Str
		case *outpostv1.Point_Flag:
			v = x.Flag
		default:
			return nil, errorf(CodeBadValue, "point %q has no value", p.GetSensor())
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, errorf(CodeBadValue, "point %q: %v", p.GetSensor(), err)
		}
		jb.Points = append(jb.Points, jsonPoint{Sensor: p.GetSensor(), TS: json.RawMessage(fmt.Sprint(p.GetTsUnixMs())), Value: raw})
	}
	return json.Marshal(jb)
}

// DecodeTelemetry decodes and validates a telemetry payload received on the
// telemetry topic of topicDevice. A payload that is a zstd frame (see
// CompressZstd) is decompressed first, up to MaxDecompressedBytes. contentType is the MQTT v5 content-type
// property; when it is empty the format is sniffed (JSON starts with '{',
// which can never start a valid TelemetryBatch in protobuf). The returned
// batch always has Device set to topicDevice. now bounds future timestamps.
func DecodeTelemetry(payload []byte, contentType, topicDevice string, now time.Time) (*outpostv1.TelemetryBatch, error) {
	if len(payload) > MaxPayloadBytes {
		return nil, errorf(CodeTooLarge, "payload is %d bytes, the limit is %d", len(payload), MaxPayloadBytes)
	}
	var (
		b   *outpostv1.TelemetryBatch
		err error
	)
	if IsZstd(payload) {
		if payload, err = decompress(payload); err != nil {
			return nil, err
		}
	}
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt // drop parameters such as "; charset=utf-8"
	}
	switch {
	case ct == ContentTypeJSON || strings.HasSuffix(ct, "+json"):
		b, err = decodeJSON(payload)
	case ct == ContentTypeProtobuf || ct == "application/protobuf" || ct == "application/vnd.google.protobuf":
		b, err = decodeProto(payload)
	case ct != "":
		return nil, errorf(CodeMalformed, "unsupported content type %q; use %q or %q", contentType, ContentTypeProtobuf, ContentTypeJSON)
	case looksLikeJSON(payload):
		b, err = decodeJSON(payload)
	default:
		b, err = decodeProto(payload)
	}
	if err != nil {
		return nil, err
	}
	if b.Device != "" && b.Device != topicDevice {
		return nil, errorf(CodeDeviceMismatch, "batch names device %q but was published on the topic of %q", b.Device, topicDevice)
	}
	b.Device = topicDevice
	if err := ValidateTelemetry(b, now); err != nil {
		return nil, err
	}
	return b, nil
}

func looksLikeJSON(p []byte) bool {
	p = bytes.TrimLeft(p, " \t\r\n")
	return len(p) > 0 && p[0] == '{'
}

func decodeProto(payload []byte) (*outpostv1.TelemetryBatch, error) {
	var b outpostv1.TelemetryBatch
	// Unknown fields (from a newer sender) are dropped: nothing downstream
	// could store them.
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(payload, &b); err != nil {
		return nil, errorf(CodeMalformed, "not a protobuf TelemetryBatch: %v", err)
	}
	if len(b.GetPoints()) > MaxPointsPerBatch {
		return nil, errorf(CodeTooManyPoints, "batch has %d points, the limit is %d", len(b.GetPoints()), MaxPointsPerBatch)
	}
	if err := expand(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

func decodeJSON(payload []byte) (*outpostv1.TelemetryBatch, error) {
	var jb jsonBatch
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jb); err != nil {
		return nil, errorf(CodeMalformed, "not a JSON telemetry batch: %v", err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, errorf(CodeMalformed, "not a JSON telemetry batch: data after the object")
	}
	if len(jb.Points) > MaxPointsPerBatch {
		return nil, errorf(CodeTooManyPoints, "batch has %d points, the limit is %d", len(jb.Points), MaxPointsPerBatch)
	}
	b := &outpostv1.TelemetryBatch{Device: jb.Device, SeqFirst: jb.SeqFirst, Points: make([]*outpostv1.Point, 0, len(jb.Points))}
	for i, jp := range jb.Points {
		p := &outpostv1.Point{Sensor: jp.Sensor}
		ts, err := ParseJSONTime(jp.TS)
		if err != nil {
			return nil, errorf(CodeBadTimestamp, "point %d: %v", i, err)
		}
		p.TsUnixMs = ts
		if err := SetJSONValue(p, jp.Value); err != nil {
			return nil, errorf(CodeBadValue, "point %d: %v", i, err)
		}
		b.Points = append(b.Points, p)
	}
	return b, nil
}

// ParseJSONTime reads a JSON timestamp as the JSON telemetry form writes
// it: milliseconds since the Unix epoch or an RFC 3339 string.
func ParseJSONTime(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("ts is missing")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("ts: %v", err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("ts %q is not RFC 3339", s)
		}
		return t.UnixMilli(), nil
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err != nil {
		return 0, fmt.Errorf("ts must be milliseconds since the Unix epoch or an RFC 3339 string: %v", err)
	}
	return ms, nil
}

// SetJSONValue sets p's value from a JSON number, string or boolean, the
// values a telemetry point carries.
func SetJSONValue(p *outpostv1.Point, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("value is missing")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		p.Value = &outpostv1.Point_Str{Str: s}
	case 't', 'f':
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		p.Value = &outpostv1.Point_Flag{Flag: v}
	default:
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("value must be a number, string or boolean")
		}
		p.Value = &outpostv1.Point_Num{Num: f}
	}
	return nil
}

// ValidateTelemetry checks a decoded batch against the limits: at least one
// and at most MaxPointsPerBatch points, seq_first ≥ 1 with no overflow, valid
// sensor names, finite numbers, bounded strings and plausible timestamps.
func ValidateTelemetry(b *outpostv1.TelemetryBatch, now time.Time) error {
	n := len(b.GetPoints())
	if n == 0 {
		return errorf(CodeEmptyBatch, "batch has no points")
	}
	if n > MaxPointsPerBatch {
		return errorf(CodeTooManyPoints, "batch has %d points, the limit is %d", n, MaxPointsPerBatch)
	}
	if b.GetSeqFirst() == 0 || b.GetSeqFirst() > math.MaxInt64-uint64(n) {
		return errorf(CodeBadSeq, "seq_first must be between 1 and 2^63-%d, got %d", n+1, b.GetSeqFirst())
	}
	maxTS := now.Add(MaxClockSkew).UnixMilli()
	for i, p := range b.GetPoints() {
		if err := ValidSensorName(p.GetSensor()); err != nil {
			return fmt.Errorf("point %d: %w", i, err)
		}
		if ts := p.GetTsUnixMs(); ts < minTimestampMs || ts > maxTS {
			return errorf(CodeBadTimestamp, "point %d (%s): timestamp %d ms is before 2000 or more than %s in the future", i, p.GetSensor(), ts, MaxClockSkew)
		}
		switch v := p.GetValue().(type) {
		case *outpostv1.Point_Num:
			if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
				return errorf(CodeBadValue, "point %d (%s): value is not a finite number", i, p.GetSensor())
			}
		case *outpostv1.Point_Str:
			if len(v.Str) > MaxStringValueLen {
				return errorf(CodeBadValue, "point %d (%s): string value is %d bytes, the limit is %d", i, p.GetSensor(), len(v.Str), MaxStringValueLen)
			}
		case *outpostv1.Point_Flag:
		default:
			return errorf(CodeBadValue, "point %d (%s): no value", i, p.GetSensor())
		}
	}
	return nil
}

// EncodeStatus encodes a birth or will message.
func EncodeStatus(s *outpostv1.Status) ([]byte, error) {
	out, err := proto.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding status: %w", err)
	}
	return out, nil
}

// jsonStatus is the JSON form of a Status: {"state":"online","agent_version":"…"}.
type jsonStatus struct {
	State        string `json:"state"`
	TS           int64  `json:"ts,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
}

// DecodeStatus decodes a status payload (protobuf or JSON, as DecodeTelemetry).
func DecodeStatus(payload []byte) (*outpostv1.Status, error) {
	if len(payload) > MaxPayloadBytes {
		return nil, errorf(CodeTooLarge, "payload is %d bytes, the limit is %d", len(payload), MaxPayloadBytes)
	}
	if looksLikeJSON(payload) {
		var js jsonStatus
		if err := json.Unmarshal(payload, &js); err != nil {
			return nil, errorf(CodeMalformed, "not a JSON status: %v", err)
		}
		st := &outpostv1.Status{TsUnixMs: js.TS, AgentVersion: js.AgentVersion}
		switch strings.ToLower(js.State) {
		case "online":
			st.State = outpostv1.Status_STATE_ONLINE
		case "offline":
			st.State = outpostv1.Status_STATE_OFFLINE
		default:
			return nil, errorf(CodeMalformed, "status state must be \"online\" or \"offline\", got %q", js.State)
		}
		return st, nil
	}
	var st outpostv1.Status
	if err := proto.Unmarshal(payload, &st); err != nil {
		return nil, errorf(CodeMalformed, "not a protobuf Status: %v", err)
	}
	if s := st.GetState(); s != outpostv1.Status_STATE_ONLINE && s != outpostv1.Status_STATE_OFFLINE {
		return nil, errorf(CodeMalformed, "status state must be online or offline, got %v", s)
	}
	return &st, nil
}
