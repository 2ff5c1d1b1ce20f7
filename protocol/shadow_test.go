package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/protocol"
)

func TestShadowTopicsRoundTrip(t *testing.T) {
	tests := []struct {
		name, op, suffix string
		want             string
	}{
		{"", "update", "", "$aws/things/pump-7/shadow/update"},
		{"", "update", "accepted", "$aws/things/pump-7/shadow/update/accepted"},
		{"", "update", "delta", "$aws/things/pump-7/shadow/update/delta"},
		{"", "update", "documents", "$aws/things/pump-7/shadow/update/documents"},
		{"", "get", "rejected", "$aws/things/pump-7/shadow/get/rejected"},
		{"", "delete", "", "$aws/things/pump-7/shadow/delete"},
		{"config", "update", "", "$aws/things/pump-7/shadow/name/config/update"},
		{"config", "get", "accepted", "$aws/things/pump-7/shadow/name/config/get/accepted"},
		{"name", "delete", "rejected", "$aws/things/pump-7/shadow/name/name/delete/rejected"},
		{"a:b_c-" + strings.Repeat("x", protocol.MaxShadowNameLen-6), "update", "delta", ""},
	}
	for _, tc := range tests {
		topic := protocol.ShadowTopic("pump-7", tc.name, tc.op, tc.suffix)
		if tc.want != "" && topic != tc.want {
			t.Errorf("ShadowTopic(%q, %q, %q) = %q, want %q", tc.name, tc.op, tc.suffix, topic, tc.want)
		}
		p, err := protocol.ParseShadowTopic(topic)
		if err != nil {
			t.Errorf("ParseShadowTopic(%q): %v", topic, err)
			continue
		}
		want := protocol.ShadowTopicParts{DeviceID: "pump-7", Name: tc.name, Op: tc.op, Suffix: tc.suffix}
		if p != want {
			t.Errorf("ParseShadowTopic(%q) = %+v, want %+v", topic, p, want)
		}
		if p.IsRequest() != (tc.suffix == "") || protocol.IsShadowResponseTopic(topic) != (tc.suffix != "") {
			t.Errorf("%q: request/response misclassified", topic)
		}
		if !protocol.DeviceMayUse("pump-7", topic) || protocol.DeviceMayUse("pump-8", topic) {
			t.Errorf("%q: DeviceMayUse should allow only pump-7", topic)
		}
	}
}

func TestParseShadowTopicRejects(t *testing.T) {
	tests := []struct {
		topic string
		code  protocol.Code
	}{
		{"", protocol.CodeBadTopic},
		{"outpost/v1/devices/pump-7/telemetry", protocol.CodeBadTopic},
		{"$aws/things/pump-7/jobs/get", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/list", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/update/other", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/get/delta", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/delete/documents", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/update/accepted/x", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/name/update", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/name/cfg", protocol.CodeBadTopic},
		{"$aws/things/pump-7/shadow/name//update", protocol.CodeBadName},
		{"$aws/things/pump-7/shadow/name/a b/update", protocol.CodeBadName},
		{"$aws/things/pump-7/shadow/name/" + strings.Repeat("n", protocol.MaxShadowNameLen+1) + "/update", protocol.CodeBadName},
		{"$aws/things/+/shadow/update", protocol.CodeBadDeviceID},
		{"$aws/things//shadow/update", protocol.CodeBadDeviceID},
	}
	for _, tc := range tests {
		_, err := protocol.ParseShadowTopic(tc.topic)
		if !errors.Is(err, tc.code) {
			t.Errorf("ParseShadowTopic(%q) = %v, want %s", tc.topic, err, tc.code)
		}
		if protocol.IsShadowResponseTopic(tc.topic) {
			t.Errorf("IsShadowResponseTopic(%q) = true", tc.topic)
		}
	}
}

func TestValidShadowName(t *testing.T) {
	for _, ok := range []string{"config", "a", "A-b_c:d", "0", strings.Repeat("z", protocol.MaxShadowNameLen)} {
		if err := protocol.ValidShadowName(ok); err != nil {
			t.Errorf("ValidShadowName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a/b", "a b", "+", "#", "ü", strings.Repeat("z", protocol.MaxShadowNameLen+1)} {
		if err := protocol.ValidShadowName(bad); !errors.Is(err, protocol.CodeBadName) {
			t.Errorf("ValidShadowName(%q) = %v, want %s", bad, err, protocol.CodeBadName)
		}
	}
}
