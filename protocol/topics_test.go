package protocol_test

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/protocol"
)

func TestTopicsRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		topic func(string) string
		kind  string
		want  string
	}{
		{"telemetry", protocol.TelemetryTopic, protocol.KindTelemetry, "outpost/v1/devices/pump-7/telemetry"},
		{"status", protocol.StatusTopic, protocol.KindStatus, "outpost/v1/devices/pump-7/status"},
	}
	for _, tc := range tests {
		for _, id := range []string{"pump-7", "a", "_x", "site.a-line_1", strings.Repeat("d", protocol.MaxDeviceIDLen)} {
			t.Run(tc.name+"/"+id, func(t *testing.T) {
				topic := tc.topic(id)
				if id == "pump-7" && topic != tc.want {
					t.Errorf("topic = %q, want %q", topic, tc.want)
				}
				gotID, gotKind, err := protocol.ParseTopic(topic)
				if err != nil {
					t.Fatalf("ParseTopic(%q): %v", topic, err)
				}
				if gotID != id || gotKind != tc.kind {
					t.Errorf("ParseTopic(%q) = %q, %q; want %q, %q", topic, gotID, gotKind, id, tc.kind)
				}
				if !protocol.DeviceMayUse(id, topic) {
					t.Errorf("DeviceMayUse(%q, %q) = false", id, topic)
				}
			})
		}
	}
}

func TestParseTopicOtherKinds(t *testing.T) {
	// ParseTopic does not restrict the kind to the known ones.
	id, kind, err := protocol.ParseTopic("outpost/v1/devices/pump-7/config")
	if err != nil || id != "pump-7" || kind != "config" {
		t.Errorf("ParseTopic = %q, %q, %v; want pump-7, config, nil", id, kind, err)
	}
}

func TestParseTopicRejects(t *testing.T) {
	tests := []struct {
		topic string
		want  protocol.Code
	}{
		{"", protocol.CodeBadTopic},
		{"outpost/v2/devices/pump-7/telemetry", protocol.CodeBadTopic},
		{"outpost/v1/device/pump-7/telemetry", protocol.CodeBadTopic},
		{"Outpost/v1/devices/pump-7/telemetry", protocol.CodeBadTopic},
		{"/outpost/v1/devices/pump-7/telemetry", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/update", protocol.CodeBadTopic},
		{"$share/g/outpost/v1/devices/pump-7/telemetry", protocol.CodeBadTopic},
		{"outpost/v1/devices", protocol.CodeBadTopic},
		{"outpost/v1/devices/", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7/", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7/telemetry/extra", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7/telemetry/", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7//telemetry", protocol.CodeBadTopic},
		{"outpost/v1/devices//telemetry", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/+/telemetry", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/#/telemetry", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/pump 7/telemetry", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/.hidden/telemetry", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/-x/status", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/pümp/status", protocol.CodeBadDeviceID},
		{"outpost/v1/devices/" + strings.Repeat("d", protocol.MaxDeviceIDLen+1) + "/status", protocol.CodeBadDeviceID},
	}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			id, kind, err := protocol.ParseTopic(tc.topic)
			checkCode(t, err, tc.want)
			if id != "" || kind != "" {
				t.Errorf("ParseTopic returned %q, %q with the error", id, kind)
			}
		})
	}
}

func TestDeviceMayUse(t *testing.T) {
	tests := []struct {
		device, topic string
		want          bool
	}{
		// Its own topics and filters below its own prefixes.
		{"pump-7", "outpost/v1/devices/pump-7/telemetry", true},
		{"pump-7", "outpost/v1/devices/pump-7/status", true},
		{"pump-7", "outpost/v1/devices/pump-7/#", true},
		{"pump-7", "outpost/v1/devices/pump-7/+", true},
		{"pump-7", "outpost/v1/devices/pump-7/cmd/+/req", true},
		{"pump-7", "$aws/things/pump-7/shadow/update", true},
		{"pump-7", "$aws/things/pump-7/shadow/update/delta", true},
		{"pump-7", "$aws/things/pump-7/jobs/notify", true},
		{"pump-7", "$aws/things/pump-7/#", true},

		// Wildcards reaching beyond its prefixes.
		{"pump-7", "#", false},
		{"pump-7", "+", false},
		{"pump-7", "+/v1/devices/pump-7/telemetry", false},
		{"pump-7", "+/+/+/+/telemetry", false},
		{"pump-7", "outpost/#", false},
		{"pump-7", "outpost/v1/devices/#", false},
		{"pump-7", "outpost/v1/devices/+/telemetry", false},
		{"pump-7", "outpost/v1/devices/+/#", false},
		{"pump-7", "$aws/things/+/shadow/update", false},
		{"pump-7", "$aws/#", false},

		// Other devices, including ones whose id has this id as a prefix.
		{"pump-7", "outpost/v1/devices/pump-8/telemetry", false},
		{"pump-7", "outpost/v1/devices/pump-70/telemetry", false},
		{"pump-7", "outpost/v1/devices/pump-7x/#", false},
		{"pump-70", "outpost/v1/devices/pump-7/telemetry", false},
		{"pump-7", "$aws/things/pump-70/shadow/update", false},
		{"pump-7", "outpost/v1/devices/PUMP-7/telemetry", false},

		// Exact prefixes with nothing after them, and near misses.
		{"pump-7", "outpost/v1/devices/pump-7/", false},
		{"pump-7", "outpost/v1/devices/pump-7", false},
		{"pump-7", "$aws/things/pump-7/", false},
		{"pump-7", "$aws/things/pump-7", false},
		{"pump-7", "", false},
		{"pump-7", "/outpost/v1/devices/pump-7/telemetry", false},

		// Shared subscriptions never match, even of its own topics.
		{"pump-7", "$share/g/outpost/v1/devices/pump-7/telemetry", false},
		{"pump-7", "$share/pump-7/$aws/things/pump-7/shadow/update", false},

		// Invalid device ids may use nothing.
		{"", "outpost/v1/devices//telemetry", false},
		{"+", "outpost/v1/devices/+/telemetry", false},
		{"#", "outpost/v1/devices/#/telemetry", false},
		{"a/b", "outpost/v1/devices/a/b/telemetry", false},
		{".", "outpost/v1/devices/./telemetry", false},
	}
	for _, tc := range tests {
		t.Run(tc.device+"→"+tc.topic, func(t *testing.T) {
			if got := protocol.DeviceMayUse(tc.device, tc.topic); got != tc.want {
				t.Errorf("DeviceMayUse(%q, %q) = %v, want %v", tc.device, tc.topic, got, tc.want)
			}
		})
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"pump-7", true},
		{"a", true},
		{"Z", true},
		{"0", true},
		{"_", true},
		{"_x", true},
		{"site.a-line_1", true},
		{"pump.", true},
		{"a..b", true},
		{"ABCdef123", true},
		{strings.Repeat("d", protocol.MaxDeviceIDLen), true},

		{"", false},
		{strings.Repeat("d", protocol.MaxDeviceIDLen+1), false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"-x", false},
		{"a/b", false},
		{"a+b", false},
		{"a#", false},
		{"+", false},
		{"#", false},
		{"$aws", false},
		{"a b", false},
		{"a:b", false},
		{"pümp", false},
		{"a\x00", false},
		{"a\n", false},
		{"a\xff", false},
		{"a*b", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			err := protocol.ValidDeviceID(tc.id)
			if tc.ok {
				if err != nil {
					t.Errorf("ValidDeviceID(%q) = %v, want nil", tc.id, err)
				}
				return
			}
			checkCode(t, err, protocol.CodeBadDeviceID)
		})
	}
}

func TestValidSensorName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"temperature", true},
		{"line1/pressure", true},
		{"modbus:40001", true},
		{"plc:rack2/slot3:ai0", true},
		{"/leading/slash", true},
		{"a.b-c_d", true},
		{strings.Repeat("n", protocol.MaxNameLen), true},

		{"", false},
		{strings.Repeat("n", protocol.MaxNameLen+1), false},
		{"tank level", false},
		{"a+b", false},
		{"a/#", false},
		{"température", false},
		{"a\x00", false},
		{"a\t", false},
		{"a,b", false},
		{`a"b`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := protocol.ValidSensorName(tc.name)
			if tc.ok {
				if err != nil {
					t.Errorf("ValidSensorName(%q) = %v, want nil", tc.name, err)
				}
				return
			}
			checkCode(t, err, protocol.CodeBadName)
		})
	}
}
