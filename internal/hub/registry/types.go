package registry

import (
	"context"
	"time"
)

// Health is an instance's health.
type Health string

// The health states. Resolve returns passing instances, and warning ones
// when asked; critical ones are never resolved.
const (
	Passing  Health = "passing"
	Warning  Health = "warning"
	Critical Health = "critical"
)

// Sources of an instance: who registered it and what keeps it healthy.
const (
	// SourceAgent: a workload deployed to Device, registered by the hub
	// from the device's workloads shadow; its health is the agent's check.
	SourceAgent = "agent"
	// SourceTTL: registered by a client that renews it within TTL.
	SourceTTL = "ttl"
	// SourceCheck: registered by a client; the hub runs Check.
	SourceCheck = "check"
)

// Check is a health check the hub runs against Address:Port.
type Check struct {
	// Type is "http" (GET http://ADDRESS:PORT{Path} answers 2xx or 3xx) or
	// "tcp" (a connection is accepted).
	Type     string        `json:"type"`
	Path     string        `json:"path,omitempty"`
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
}

// Instance is one registered instance of a service.
type Instance struct {
	// Service is the service name: 1 to 63 of a-z 0-9 -, starting with a
	// letter, not ending with -.
	Service string `json:"service"`
	// ID identifies the instance within Service (1 to 128 of A-Z a-z 0-9
	// - _ . : /); Register makes one up from Address and Port when empty.
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	Health  Health            `json:"health"`
	// Output is the last check's or renewal's message.
	Output string `json:"output,omitempty"`
	// Source is SourceAgent, SourceTTL or SourceCheck.
	Source string `json:"source"`
	// Device is the device running the instance (SourceAgent), else "".
	Device string `json:"device,omitempty"`
	// TTL is how long a SourceTTL instance stays passing after a renewal.
	TTL time.Duration `json:"ttl,omitempty"`
	// Check is the check of a SourceCheck instance.
	Check *Check `json:"check,omitempty"`
	// ExpiresAt is when a SourceTTL instance turns critical unless renewed.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// CriticalSince is when the instance last turned critical; zero while
	// it is not. Options.DeregisterCriticalAfter counts from it.
	CriticalSince time.Time `json:"critical_since,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Key returns the instance's key in its backend: SERVICE/ID.
func (in Instance) Key() string { return in.Service + "/" + in.ID }

// EventType says what happened to an instance.
type EventType string

// The event types.
const (
	EventPut    EventType = "put"
	EventDelete EventType = "delete"
)

// Event is one change of the registry. For EventDelete only Service and
// ID of Instance are set.
type Event struct {
	Type     EventType
	Instance Instance
}

// Backend stores instances. The built-in one keeps them in the hub's
// store; the etcd one in an etcd cluster. Methods are safe for concurrent
// use. The same test suite (backendtest) runs against every backend.
type Backend interface {
	// Put creates or replaces an instance. With ttl > 0 the backend
	// deletes it (or, for the built-in backend, the service marks it
	// critical) once ttl passed without another Put or Touch.
	Put(ctx context.Context, in Instance, ttl time.Duration) error
	// Delete removes an instance; removing a missing one is not an error.
	Delete(ctx context.Context, service, id string) error
	// Get returns one instance, or an error matching ErrNotFound.
	Get(ctx context.Context, service, id string) (Instance, error)
	// List returns the instances of service ("" for every service),
	// sorted by service then id.
	List(ctx context.Context, service string) ([]Instance, error)
	// Watch sends every change of service's instances ("" for every
	// service) until ctx ends, then closes the channel.
	Watch(ctx context.Context, service string) (<-chan Event, error)
	// Close releases the backend.
	Close() error
}

// ResolveOptions narrow Resolve and Watch.
type ResolveOptions struct {
	// Tags: only instances carrying every one of them.
	Tags []string
	// IncludeWarning also returns warning instances.
	IncludeWarning bool
}
