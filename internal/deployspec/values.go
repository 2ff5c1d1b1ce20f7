package deployspec

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-edge/outpost/internal/rollout"
)

// Duration is a time.Duration written as a Go duration string ("500ms",
// "30s", "1m30s"). A bare number other than 0 is refused: it would be
// unclear whether it means seconds or nanoseconds.
type Duration time.Duration

// ParseDuration reads a Go duration string.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write e.g. 500ms, 30s or 2m", s)
	}
	return Duration(d), nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration ("1m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as 30s, got %s", b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Batch is the size of a rollout batch: a percentage of the selected devices
// ("25%", rounded up) or a number of devices ("5"), as rollout.ParseBatchSize
// reads it.
type Batch rollout.BatchSize

// ParseBatch reads "25%" or "5".
func ParseBatch(s string) (Batch, error) {
	b, err := rollout.ParseBatchSize(s)
	return Batch(b), err
}

// Size returns b as the rollout package uses it.
func (b Batch) Size() rollout.BatchSize { return rollout.BatchSize(b) }

// String returns the form ParseBatch reads.
func (b Batch) String() string { return b.Size().String() }

// valid reports whether b is a percentage in (0, 100] or a count of at least 1.
func (b Batch) valid() bool {
	if b.Count != 0 {
		return b.Count > 0
	}
	return b.Percent > 0 && b.Percent <= 100 && !math.IsNaN(b.Percent)
}

// MarshalJSON writes b as a string ("25%" or "5").
func (b Batch) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a string or a number.
func (b *Batch) UnmarshalJSON(data []byte) error {
	v, err := ParseBatch(jsonScalar(data))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes b as a string.
func (b Batch) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML reads "25%" or 5.
func (b *Batch) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBatch(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
