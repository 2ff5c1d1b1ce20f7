package protocol

import "fmt"

// DeviceServicesPath is the hub's REST path (under its URL) where a device
// looks up the instances of a service: GET DeviceServicesPath + NAME
// [?tag=T…], HTTP Basic with the device id and MQTT password. The answer
// is a ServiceLookup.
const DeviceServicesPath = "/api/v1/device/services/"

// MaxServiceWordLen is the longest service name or tag.
const MaxServiceWordLen = 128

// ServiceInstance is one registered instance of a service, as a device
// sees it.
type ServiceInstance struct {
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	// Health is the instance's health as the registry knows it: passing,
	// warning or critical.
	Health string `json:"health"`
}

// ServiceLookup is the hub's answer to a device's service lookup.
// Instances is never null: an unknown service has none.
type ServiceLookup struct {
	Service   string            `json:"service"`
	Instances []ServiceInstance `json:"instances"`
}

// CheckServiceWord accepts a service name or tag: 1 to MaxServiceWordLen
// bytes of ASCII letters, digits, '.', '_' and '-'. what names it in the
// error ("service name", "tag").
func CheckServiceWord(what, s string) error {
	if len(s) == 0 || len(s) > MaxServiceWordLen {
		return fmt.Errorf("%s must be 1 to %d bytes, got %d", what, MaxServiceWordLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%s %q has %q at byte %d; allowed are letters, digits, '.', '_' and '-'", what, s, c, i)
		}
	}
	return nil
}
