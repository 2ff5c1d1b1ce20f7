package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Spool configures the agent's durable on-disk queue (key spool). Points are
// acknowledged to their source only once they are in the spool, and leave
// it only once the hub's broker has acknowledged them.
type Spool struct {
	// Path is the spool file (key spool.path). Empty, the default, means
	// spool.db in the agent's data directory; a relative path is taken
	// relative to the data directory. The file is a bbolt database; the
	// sequence-number reservation file "seq" stays in the data directory
	// whatever the path.
	Path string `yaml:"path"`
	// CommitInterval is how long the spool collects points before one
	// transaction with one fsync stores them all (key
	// spool.commit_interval), 0 to 1s. Longer means fewer fsyncs (less
	// wear, more throughput on slow storage) but a source waits up to this
	// long before its reading counts as stored; nothing acknowledged is lost
	// either way, since a source is told "stored" only after the fsync.
	// 0 commits as soon as the previous commit is done. Default 2ms.
	CommitInterval Duration `yaml:"commit_interval"`
	// CommitPoints ends the collecting early once this many points wait
	// (key spool.commit_points), 1 to 100000. Larger commits amortize the
	// fsync better; smaller ones keep the latency of a burst down. Default
	// 1000.
	CommitPoints int `yaml:"commit_points"`
	// MaxBytes bounds the point data the spool holds (key spool.max_bytes):
	// a plain number of bytes or a size such as 512KiB, 64MiB or 1GiB; at
	// least 1KiB. Each point counts its encoded size plus about 36 bytes of
	// key, header and index; the file itself is somewhat larger (bbolt
	// pages are never fully packed and the file does not shrink). Default
	// 64MiB.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// MaxAge drops points that have waited in the spool longer than this
	// (key spool.max_age); the drops are counted like overflow drops. 0
	// keeps points forever; otherwise at least 1s. Default 168h (a week).
	MaxAge Duration `yaml:"max_age"`
	// Overflow is what happens when a new point would exceed max_bytes
	// (key spool.overflow): "drop_oldest" (default) deletes the oldest
	// waiting points and counts them (outpost_agent_spool_dropped_total,
	// and the spool's "dropped" reported to the hub); "block" makes the
	// sources wait until the uplink has delivered enough to make room, so
	// readings taken meanwhile are late rather than lost (a source's own
	// buffer, if any, may still overflow).
	Overflow string `yaml:"overflow"`
}

// The overflow policies Validate accepts.
const (
	OverflowDropOldest = "drop_oldest"
	OverflowBlock      = "block"
)

// Spool defaults and limits.
const (
	DefaultSpoolFileName       = "spool.db"
	DefaultSpoolCommitInterval = 2 * time.Millisecond
	DefaultSpoolCommitPoints   = 1000
	DefaultSpoolMaxBytes       = 64 << 20
	DefaultSpoolMaxAge         = 168 * time.Hour
	MinSpoolMaxBytes           = 1 << 10
	MaxSpoolCommitPoints       = 100_000
	MaxSpoolCommitInterval     = time.Second
)

// DefaultSpool returns the spool settings used for every key agent.yaml
// leaves out.
func DefaultSpool() Spool {
	return Spool{
		CommitInterval: Duration(DefaultSpoolCommitInterval),
		CommitPoints:   DefaultSpoolCommitPoints,
		MaxBytes:       DefaultSpoolMaxBytes,
		MaxAge:         Duration(DefaultSpoolMaxAge),
		Overflow:       OverflowDropOldest,
	}
}

// validate reports every problem of the spool settings, each naming its key.
func (s Spool) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.CommitInterval < 0 || s.CommitInterval.D() > MaxSpoolCommitInterval {
		add("spool.commit_interval: must be 0 to %s, got %s", MaxSpoolCommitInterval, s.CommitInterval)
	}
	if s.CommitPoints < 1 || s.CommitPoints > MaxSpoolCommitPoints {
		add("spool.commit_points: must be 1 to %d, got %d", MaxSpoolCommitPoints, s.CommitPoints)
	}
	if s.MaxBytes < MinSpoolMaxBytes {
		add("spool.max_bytes: must be at least %s, got %s", ByteSize(MinSpoolMaxBytes), s.MaxBytes)
	}
	if s.MaxAge < 0 || (s.MaxAge > 0 && s.MaxAge.D() < time.Second) {
		add("spool.max_age: must be 0 (no limit) or at least 1s, got %s", s.MaxAge)
	}
	switch s.Overflow {
	case OverflowDropOldest, OverflowBlock:
	default:
		add("spool.overflow: must be %s or %s, got %q", OverflowDropOldest, OverflowBlock, s.Overflow)
	}
	return errs
}

// ByteSize is a number of bytes written in YAML as a plain integer (65536)
// or with a binary or decimal unit (64KiB, 64MiB, 1GiB, 500kB, 2MB).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first, so that "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000},
	{"B", 1},
}

// ParseByteSize parses a size as UnmarshalYAML does.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size; write a number of bytes or e.g. 512KiB, 64MiB, 1GiB", s)
	}
	return ByteSize(n * mult), nil
}

// String formats b with the largest binary unit that divides it exactly.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size such as 64MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}
