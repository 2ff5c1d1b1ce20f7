package livefeed

import (
	"slices"
	"sync"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// DefaultBuffer is the number of batches a subscriber may have waiting
// before the feed drops batches for it.
const DefaultBuffer = 64

// Feed delivers published points to its subscribers. Its methods are safe
// for concurrent use; Publish never blocks.
type Feed struct {
	buffer int

	// mu guards subs.
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// New returns a feed whose subscribers each buffer up to buffer batches;
// buffer < 1 means DefaultBuffer.
func New(buffer int) *Feed {
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	return &Feed{buffer: buffer, subs: map[*Subscription]struct{}{}}
}

// Filter selects the points a subscriber gets. An empty list matches
// everything.
type Filter struct {
	Devices []string
	Sensors []string
}

// Subscription is one subscriber's view of the feed. Read batches from C;
// Notify fires when points were dropped. Close it when done.
type Subscription struct {
	feed    *Feed
	devices map[string]bool
	sensors map[string]bool
	c       chan []store.Point
	notify  chan struct{}

	// mu guards dropped and closed.
	mu      sync.Mutex
	dropped uint64
	closed  bool
}

// Subscribe adds a subscriber for the points f matches.
func (f *Feed) Subscribe(filter Filter) *Subscription {
	s := &Subscription{
		feed:    f,
		devices: set(filter.Devices),
		sensors: set(filter.Sensors),
		c:       make(chan []store.Point, f.buffer),
		notify:  make(chan struct{}, 1),
	}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	return s
}

func set(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, v := range list {
		m[v] = true
	}
	return m
}

// Subscribers returns the number of open subscriptions.
func (f *Feed) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Publish hands points, a committed batch, to every subscriber whose
// filter matches some of them. It copies what it keeps, so the caller may
// reuse points afterwards. A subscriber whose buffer is full loses the
// batch: its dropped count grows and Notify fires.
func (f *Feed) Publish(points []store.Point) {
	if len(points) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return
	}
	// all is shared, read-only, by the subscribers that take every point.
	var all []store.Point
	for s := range f.subs {
		var batch []store.Point
		if s.devices == nil && s.sensors == nil {
			if all == nil {
				all = slices.Clone(points)
			}
			batch = all
		} else {
			for _, p := range points {
				if s.match(p) {
					batch = append(batch, p)
				}
			}
		}
		if len(batch) == 0 {
			continue
		}
		select {
		case s.c <- batch:
		default:
			s.drop(len(batch))
		}
	}
}

func (s *Subscription) match(p store.Point) bool {
	return (s.devices == nil || s.devices[p.DeviceID]) && (s.sensors == nil || s.sensors[p.Sensor])
}

func (s *Subscription) drop(n int) {
	s.mu.Lock()
	s.dropped += uint64(n)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// C delivers the subscriber's batches, oldest first. The batches are
// shared with other subscribers: do not modify them. C is never closed.
func (s *Subscription) C() <-chan []store.Point { return s.c }

// Notify receives a value after points were dropped for the subscriber.
func (s *Subscription) Notify() <-chan struct{} { return s.notify }

// TakeDropped returns the number of points dropped since the last call
// and resets it.
func (s *Subscription) TakeDropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

// Close ends the subscription; closing twice is harmless.
func (s *Subscription) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return
	}
	s.feed.mu.Lock()
	delete(s.feed.subs, s)
	s.feed.mu.Unlock()
}
