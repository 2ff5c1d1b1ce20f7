package hub

import (
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/registry"
)

// Config is the hub's configuration. Every field is also a flag of
// `outpost hub` (docs/hub.md).
type Config struct {
	// DataDir holds the SQLite database and the generated admin password.
	DataDir string
	// HTTPAddr is the listen address of the REST API, /metrics and /healthz.
	HTTPAddr string
	// MQTTAddr is the listen address of the embedded MQTT broker.
	MQTTAddr string
	// AdminPasswordFile, if set, holds the admin password to use (it
	// replaces the stored one on every start). If empty, the hub generates a
	// password on first start and writes it to DataDir/admin-password.
	AdminPasswordFile string
	// PublicURL is the hub's URL as devices and the CLI reach it, used in
	// join commands and join responses. Empty: taken from each request.
	PublicURL string
	// MQTTPublicURL is the broker's URL as devices reach it, e.g.
	// mqtt://hub.example.com:1883. Empty: the HTTP request's host with the
	// MQTT listen port.
	MQTTPublicURL string
	// JoinTokenTTL is how long a device join token stays valid.
	JoinTokenTTL time.Duration
	// SessionTTL is how long an API token from `outpost login` stays valid.
	SessionTTL time.Duration
	// CoAPAddr is the UDP listen address of the CoAP transport of the TUF
	// repository (docs/ota.md), e.g. ":5683". Empty: CoAP is off.
	CoAPAddr string
	// GRPCAddr is the listen address of the gRPC API (docs/grpc.md); "" or
	// "off": no gRPC API. Default leaves it off so that in-process hubs
	// (tests, the demo) take no fixed port; `outpost hub --grpc` defaults
	// to DefaultGRPCAddr.
	GRPCAddr string
	// Registry is where the service registry keeps its instances
	// (docs/registry.md): "" or "builtin" for the hub's own store,
	// "etcd://HOST:PORT[,HOST:PORT…][/PREFIX]" for an etcd cluster.
	Registry string
	// MaxArtifactBytes bounds an artifact published with `outpost artifacts
	// publish` (docs/ota.md); larger uploads get 413.
	MaxArtifactBytes int64
}

// DefaultGRPCAddr is the default of `outpost hub --grpc`.
const DefaultGRPCAddr = ":9090"

// grpcEnabled reports whether GRPCAddr asks for a gRPC listener.
func (c Config) grpcEnabled() bool { return c.GRPCAddr != "" && c.GRPCAddr != "off" }

// Default returns the configuration `outpost hub` starts with.
func Default() Config {
	return Config{
		DataDir:      "./hub-data",
		HTTPAddr:     ":8080",
		MQTTAddr:     ":1883",
		JoinTokenTTL: 24 * time.Hour,
		SessionTTL:   12 * time.Hour,

		MaxArtifactBytes: 512 << 20,
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory is empty"))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("HTTP listen address is empty"))
	}
	if c.MQTTAddr == "" {
		errs = append(errs, errors.New("MQTT listen address is empty"))
	}
	if c.JoinTokenTTL < time.Minute {
		errs = append(errs, fmt.Errorf("join token lifetime %s is under a minute", c.JoinTokenTTL))
	}
	if c.SessionTTL < time.Minute {
		errs = append(errs, fmt.Errorf("session lifetime %s is under a minute", c.SessionTTL))
	}
	if _, err := registry.ParseRegistryURL(c.Registry); err != nil {
		errs = append(errs, err)
	}
	if c.MaxArtifactBytes < 0 {
		errs = append(errs, fmt.Errorf("artifact size limit %d is negative", c.MaxArtifactBytes))
	}
	return errors.Join(errs...)
}
