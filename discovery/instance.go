package discovery

import (
	"net"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/outpost-edge/outpost/gen/outpost/api/v1"
)

// Health is an instance's health as the hub last saw it.
type Health int

// The health states, in the order of the wire enum.
const (
	HealthUnknown Health = iota
	HealthPassing
	HealthWarning
	HealthCritical
)

// String returns "passing", "warning", "critical" or "unknown".
func (h Health) String() string {
	switch h {
	case HealthPassing:
		return "passing"
	case HealthWarning:
		return "warning"
	case HealthCritical:
		return "critical"
	default:
		return "unknown"
	}
}

// Instance is one registered instance of a service.
type Instance struct {
	Service string
	// ID identifies the instance within its service.
	ID      string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Health  Health
	// Output is the last check's or renewal's message.
	Output string
	// Source is "agent" (a workload deployed to Device), "ttl" or "check".
	Source string
	Device string
	// TTL is the renewal deadline of a "ttl" instance, zero otherwise.
	TTL time.Duration
	// Updated is when the hub last changed the instance.
	Updated time.Time
}

// Addr returns "address:port", ready to dial.
func (i Instance) Addr() string {
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

// Registration describes an instance to register with a TTL: the hub marks
// it critical when no renewal (KeepAlive) arrives within TTL.
type Registration struct {
	// Service is the service name: 1 to 63 of a-z 0-9 -, starting with a letter.
	Service string
	// ID identifies the instance within its service; when empty the hub
	// makes one up from Address and Port.
	ID      string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	// TTL is how long the instance stays passing without a renewal.
	TTL time.Duration
}

func instanceFromProto(p *apiv1.Instance) Instance {
	in := Instance{
		Service: p.GetService(),
		ID:      p.GetId(),
		Address: p.GetAddress(),
		Port:    int(p.GetPort()),
		Tags:    p.GetTags(),
		Meta:    p.GetMeta(),
		Health:  Health(p.GetHealth()),
		Output:  p.GetOutput(),
		Source:  p.GetSource(),
		Device:  p.GetDevice(),
	}
	if p.GetTtl() != nil {
		in.TTL = p.GetTtl().AsDuration()
	}
	if ms := p.GetUpdatedUnixMs(); ms != 0 {
		in.Updated = time.UnixMilli(ms)
	}
	return in
}

func (r Registration) proto() *apiv1.Instance {
	p := &apiv1.Instance{
		Service: r.Service,
		Id:      r.ID,
		Address: r.Address,
		Port:    uint32(r.Port),
		Tags:    r.Tags,
		Meta:    r.Meta,
	}
	if r.TTL > 0 {
		p.Ttl = durationpb.New(r.TTL)
	}
	return p
}

// usable reports whether an instance may receive traffic: passing, or
// warning when includeWarning.
func usable(h Health, includeWarning bool) bool {
	return h == HealthPassing || (includeWarning && h == HealthWarning)
}

// filterUsable converts a snapshot, keeping the usable instances only.
func filterUsable(ps []*apiv1.Instance, includeWarning bool) []Instance {
	out := make([]Instance, 0, len(ps))
	for _, p := range ps {
		in := instanceFromProto(p)
		if usable(in.Health, includeWarning) {
			out = append(out, in)
		}
	}
	return out
}
