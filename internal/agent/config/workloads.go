package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Workloads configures the services the hub deploys to this device (key
// workloads; docs/agent-workloads.md).
type Workloads struct {
	// Enabled lets the hub deploy services to this device (key
	// workloads.enabled). Off, the agent ignores the workloads shadow and
	// runs no service. Default true.
	Enabled bool `yaml:"enabled"`
	// Address is the IP address services are told to listen on, in their
	// OUTPOST_ADDRESS environment variable, and the one http and tcp health
	// checks connect to (key workloads.address). Several agents can share
	// one host by giving each its own loopback address (127.0.0.2,
	// 127.0.0.3, …), or services can be bound to one interface. Default
	// 127.0.0.1.
	Address string `yaml:"address"`
	// AdvertiseAddress is the address the hub's service registry gives
	// other clients for this device's services (key
	// workloads.advertise_address): a host name or IP they can reach.
	// Default: Address, which with the default 127.0.0.1 only serves
	// clients on the device itself.
	AdvertiseAddress string `yaml:"advertise_address"`
	// StopGrace is how long a service has to exit after SIGTERM before it
	// is killed (key workloads.stop_grace), 1s to 10m. Default 10s.
	StopGrace Duration `yaml:"stop_grace"`
	// LogLines is how many of each service's latest output lines the agent
	// keeps in memory for the hub's log requests (key workloads.log_lines),
	// 10 to 100000. Default 1000.
	LogLines int `yaml:"log_lines"`
}

// Workloads defaults.
const (
	DefaultWorkloadsAddress   = "127.0.0.1"
	DefaultWorkloadsStopGrace = 10 * time.Second
	DefaultWorkloadsLogLines  = 1000
)

// Advertised returns the address to advertise for this device's services:
// AdvertiseAddress, or Address when it is empty.
func (w Workloads) Advertised() string {
	if w.AdvertiseAddress != "" {
		return w.AdvertiseAddress
	}
	return w.Address
}

// DefaultWorkloads returns the workloads section's defaults.
func DefaultWorkloads() Workloads {
	return Workloads{
		Enabled:   true,
		Address:   DefaultWorkloadsAddress,
		StopGrace: Duration(DefaultWorkloadsStopGrace),
		LogLines:  DefaultWorkloadsLogLines,
	}
}

func (w Workloads) validate() []error {
	var errs []error
	if ip := net.ParseIP(w.Address); ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
		errs = append(errs, fmt.Errorf("workloads.address: must be an IP address services can listen on and health checks connect to, e.g. 127.0.0.1, got %q", w.Address))
	}
	if a := w.AdvertiseAddress; len(a) > 253 || strings.ContainsAny(a, " /:@?#") && net.ParseIP(a) == nil {
		errs = append(errs, fmt.Errorf("workloads.advertise_address: must be a host name or IP address, got %q", a))
	}
	if w.StopGrace.D() < time.Second || w.StopGrace.D() > 10*time.Minute {
		errs = append(errs, fmt.Errorf("workloads.stop_grace: must be 1s to 10m, got %s", w.StopGrace))
	}
	if w.LogLines < 10 || w.LogLines > 100000 {
		errs = append(errs, fmt.Errorf("workloads.log_lines: must be 10 to 100000, got %d", w.LogLines))
	}
	return errs
}
