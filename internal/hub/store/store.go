package store

import "time"

// Device is one registered edge device.
type Device struct {
	ID        string
	Labels    map[string]string
	CreatedAt time.Time
	// JoinedAt is when the device last redeemed a join token; zero if never.
	JoinedAt time.Time
	Online   bool
	// LastSeen is the last connect, disconnect or telemetry; zero if never.
	LastSeen     time.Time
	AgentVersion string
	// Spool is the agent's last reported store-and-forward backlog; nil if
	// it never reported one.
	Spool *SpoolStats
}

// SpoolStats is an agent's report of its durable queue.
type SpoolStats struct {
	Points  uint64 // points waiting to reach the hub
	Bytes   uint64 // size of the spool file
	Dropped uint64 // points dropped unsent, since the spool was created
	// Oldest is the timestamp of the oldest waiting point; zero if none.
	Oldest time.Time
	// ReportedAt is when the hub received the report.
	ReportedAt time.Time
}

// Point is one stored telemetry point. Exactly one of Num, Str and Flag is
// set; Kind says which.
type Point struct {
	DeviceID string
	Seq      uint64
	Sensor   string
	TS       time.Time
	Kind     ValueKind
	Num      float64
	Str      string
	Flag     bool
}

// ValueKind says which value field of a Point is set.
type ValueKind uint8

// The kinds of point values.
const (
	KindNum ValueKind = iota + 1
	KindStr
	KindFlag
)

// Value returns the point's value as a float64, string or bool.
func (p Point) Value() any {
	switch p.Kind {
	case KindStr:
		return p.Str
	case KindFlag:
		return p.Flag
	default:
		return p.Num
	}
}

// PointQuery selects a device's points in [Since, Until), oldest first.
type PointQuery struct {
	DeviceID string
	Sensor   string // empty: all sensors
	Since    time.Time
	Until    time.Time
	Limit    int
}

// Presence is a change of a device's connection state.
type Presence struct {
	DeviceID     string
	Online       bool
	At           time.Time
	AgentVersion string // empty: keep the stored one
	// Spool is the agent's spool report, if the status carried one; nil
	// keeps the stored report.
	Spool *SpoolStats
}

// Shadow is one stored device shadow. The store keeps the document as
// opaque JSON; the shadow service owns its meaning.
type Shadow struct {
	DeviceID string
	Name     string // empty: the device's classic shadow
	// Version is the version of the last accepted update. A deleted shadow
	// keeps it, so that a later update continues from it.
	Version int64
	// Doc is the document in the shadow service's encoding.
	Doc []byte
	// Deleted marks a deleted shadow (a tombstone that keeps the version).
	Deleted   bool
	UpdatedAt time.Time
}
