package queue

import (
	"context"
	"sync"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

// Stats are a queue's counters.
type Stats struct {
	// Len is how many batches the queue holds, the one in flight included.
	Len int
	// Dropped is how many batches were dropped because the queue was full.
	Dropped uint64
	// DroppedPoints is how many points those batches held.
	DroppedPoints uint64
}

// Memory is a bounded FIFO of batches. Put never blocks. Next returns the
// oldest batch without removing it, so a batch whose publish failed is
// returned again; Done removes it. One goroutine may call Put while another
// calls Next and Done.
type Memory struct {
	max int

	mu sync.Mutex // guards the fields below
	// items[0] is the oldest batch; it is in flight when inFlight is true.
	items    []*outpostv1.TelemetryBatch
	inFlight bool
	dropped  uint64
	droppedP uint64
	// ready is signalled (without blocking) by every Put.
	ready chan struct{}
}

// NewMemory returns a queue holding at most maxBatches waiting batches (at
// least 1); the batch in flight does not count, so it is never dropped.
func NewMemory(maxBatches int) *Memory {
	return &Memory{max: max(1, maxBatches), ready: make(chan struct{}, 1)}
}

// Put appends b. When the queue is full the oldest waiting batch is dropped
// and counted. It never blocks and never fails.
func (q *Memory) Put(_ context.Context, b *outpostv1.TelemetryBatch) error {
	q.mu.Lock()
	waiting := len(q.items)
	first := 0
	if q.inFlight {
		waiting--
		first = 1
	}
	if waiting >= q.max {
		d := q.items[first]
		q.dropped++
		q.droppedP += uint64(len(d.GetPoints()))
		q.items = append(q.items[:first], q.items[first+1:]...)
	}
	q.items = append(q.items, b)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil
}

// Next waits until the queue holds a batch and returns the oldest without
// removing it. Calling Next again before Done returns the same batch.
func (q *Memory) Next(ctx context.Context) (*outpostv1.TelemetryBatch, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			q.inFlight = true
			b := q.items[0]
			q.mu.Unlock()
			return b, nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.ready:
		}
	}
}

// Done removes b, which Next returned, because it was delivered or
// rejected for good.
func (q *Memory) Done(b *outpostv1.TelemetryBatch) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || q.items[0] != b || !q.inFlight {
		return ErrNotHead
	}
	q.items[0] = nil
	q.items = q.items[1:]
	q.inFlight = false
	return nil
}

// Stats returns the counters. It is safe to call at any time.
func (q *Memory) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Len: len(q.items), Dropped: q.dropped, DroppedPoints: q.droppedP}
}
