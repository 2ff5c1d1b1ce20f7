package protocol

import "strings"

// TopicPrefix is the root of every Outpost topic.
const TopicPrefix = "outpost/v1/devices/"

// The last segment of each per-device topic.
const (
	KindTelemetry = "telemetry"
	KindStatus    = "status"
)

// TelemetryTopic is the topic a device publishes telemetry batches to.
func TelemetryTopic(deviceID string) string { return TopicPrefix + deviceID + "/" + KindTelemetry }

// StatusTopic is the topic of a device's retained birth message and last will.
func StatusTopic(deviceID string) string { return TopicPrefix + deviceID + "/" + KindStatus }

// DeviceTopicPrefixes are the topic prefixes a device may publish and
// subscribe under: its own Outpost topics and its own AWS IoT-style shadow and
// jobs topics.
func DeviceTopicPrefixes(deviceID string) []string {
	return []string{TopicPrefix + deviceID + "/", "$aws/things/" + deviceID + "/"}
}

// DeviceMayUse reports whether deviceID may publish to, or subscribe with,
// the topic or filter t. Wildcards are allowed only below the device's own
// prefixes, so "#" or "outpost/v1/devices/+/telemetry" are refused.
func DeviceMayUse(deviceID, t string) bool {
	if ValidDeviceID(deviceID) != nil {
		return false
	}
	for _, p := range DeviceTopicPrefixes(deviceID) {
		if strings.HasPrefix(t, p) && len(t) > len(p) {
			return true
		}
	}
	return false
}

// ParseTopic splits an Outpost device topic into the device id and the kind
// (KindTelemetry, KindStatus, ...). It fails for any other topic.
func ParseTopic(topic string) (deviceID, kind string, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", "", errorf(CodeBadTopic, "topic %q is not under %q", topic, TopicPrefix)
	}
	deviceID, kind, ok = strings.Cut(rest, "/")
	if !ok || kind == "" || strings.Contains(kind, "/") {
		return "", "", errorf(CodeBadTopic, "topic %q is not %s{device}/{kind}", topic, TopicPrefix)
	}
	if err := ValidDeviceID(deviceID); err != nil {
		return "", "", err
	}
	return deviceID, kind, nil
}
