package config

import (
	"fmt"
	"net"
)

// API configures the local API for edge apps (key api; docs/agent-api.md):
// publish telemetry, read the app's configuration, look up services and
// keep state, over HTTP on the device.
type API struct {
	// Listen is the address of the local API (key api.listen), e.g.
	// 127.0.0.1:7070. Empty turns it off. It must be a loopback address
	// unless AllowRemote is set: the API has no authentication. When the
	// default address is taken (several agents on one host) the agent logs
	// a warning and runs without the API; any other address that cannot be
	// used stops the start. Default 127.0.0.1:7070.
	Listen string `yaml:"listen"`
	// AllowRemote allows a Listen address other than loopback (key
	// api.allow_remote), e.g. for apps in containers with their own network
	// namespace. Anyone who can reach the address can publish telemetry as
	// this device and read its app configuration. Default false.
	AllowRemote bool `yaml:"allow_remote,omitempty"`
}

// DefaultAPIListen is api.listen's default.
const DefaultAPIListen = "127.0.0.1:7070"

// DefaultAPI returns the api section's defaults.
func DefaultAPI() API { return API{Listen: DefaultAPIListen} }

func (a API) validate() []error {
	if a.Listen == "" {
		return nil
	}
	if a.AllowRemote {
		if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
			return []error{fmt.Errorf("api.listen: %q is not host:port", a.Listen)}
		}
		return nil
	}
	if err := checkLoopback(a.Listen); err != nil {
		return []error{fmt.Errorf("api.listen: %w; set api.allow_remote: true to listen on it anyway", err)}
	}
	return nil
}
