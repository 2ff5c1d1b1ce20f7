package report

import (
	"fmt"
	"time"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
	"github.com/outpost-edge/outpost/protocol"
)

// Strategy decides which readings of one source are passed on to the sink,
// and when. The collector feeds it every valid, named, timestamped point a
// read produced and appends what it returns, in the order returned.
//
// A Strategy belongs to the goroutine of its source: its methods are never
// called concurrently and need no locking. It takes ownership of the points
// offered; the slices it returns belong to the caller.
type Strategy interface {
	// Offer takes the points of one read taken at now (possibly none, when
	// the read failed) and returns the points to append now, possibly none.
	Offer(now time.Time, points []*outpostv1.Point) []*outpostv1.Point
	// Deadline returns when the points the strategy holds back must be
	// appended at the latest, by calling Flush; the zero time when it
	// holds none.
	Deadline() time.Time
	// Flush returns every point held back and forgets them. The collector
	// calls it at the deadline and when the source stops.
	Flush() []*outpostv1.Point
}

// Realtime passes on every reading as soon as it is read.
type Realtime struct{}

var (
	_ Strategy = Realtime{}
	_ Strategy = (*Batch)(nil)
	_ Strategy = (*OnChange)(nil)
)

// Offer returns points.
func (Realtime) Offer(_ time.Time, points []*outpostv1.Point) []*outpostv1.Point { return points }

// Deadline returns the zero time: Realtime holds nothing.
func (Realtime) Deadline() time.Time { return time.Time{} }

// Flush returns nil: Realtime holds nothing.
func (Realtime) Flush() []*outpostv1.Point { return nil }

// Batch holds readings back until it holds maxPoints of them or the first
// of them is maxDelay old, then passes them on together, so that the sink
// sees one Append for many points.
type Batch struct {
	maxPoints int
	maxDelay  time.Duration
	held      []*outpostv1.Point
	// first is when the oldest held point was offered.
	first time.Time
}

// NewBatch returns a Batch strategy. maxPoints must be 1 to
// protocol.MaxPointsPerBatch and maxDelay positive.
func NewBatch(maxPoints int, maxDelay time.Duration) (*Batch, error) {
	if maxPoints < 1 || maxPoints > protocol.MaxPointsPerBatch {
		return nil, fmt.Errorf("batch: max points must be 1 to %d, got %d", protocol.MaxPointsPerBatch, maxPoints)
	}
	if maxDelay <= 0 {
		return nil, fmt.Errorf("batch: max delay must be positive, got %s", maxDelay)
	}
	return &Batch{maxPoints: maxPoints, maxDelay: maxDelay}, nil
}

// Offer holds points and returns everything held once at least maxPoints
// are held or the oldest held point is maxDelay old at now.
func (b *Batch) Offer(now time.Time, points []*outpostv1.Point) []*outpostv1.Point {
	if len(points) > 0 {
		if len(b.held) == 0 {
			b.first = now
			b.held = make([]*outpostv1.Point, 0, max(b.maxPoints, len(points)))
		}
		b.held = append(b.held, points...)
	}
	if len(b.held) >= b.maxPoints || len(b.held) > 0 && !now.Before(b.Deadline()) {
		return b.Flush()
	}
	return nil
}

// Deadline returns when the oldest held point is maxDelay old.
func (b *Batch) Deadline() time.Time {
	if len(b.held) == 0 {
		return time.Time{}
	}
	return b.first.Add(b.maxDelay)
}

// Flush returns the held points.
func (b *Batch) Flush() []*outpostv1.Point {
	out := b.held
	b.held = nil
	return out
}
