package device

import (
	"context"
	"sync"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// maxPresenceBatch bounds the changes written in one transaction.
const maxPresenceBatch = 1000

// presenceBatch is a group commit for presence changes. Every connect,
// disconnect and status message is a store write, and the store has one
// writer: written one by one, a fleet reconnecting after a hub restart
// queues thousands of them behind each other. Here the first caller
// becomes the leader and writes everything queued meanwhile in one
// transaction, until the queue is empty; every caller still returns only
// after its own change was written.
type presenceBatch struct {
	mu      sync.Mutex
	queue   []presenceWrite
	writing bool
}

type presenceWrite struct {
	p    store.Presence
	done chan error
}

func (b *presenceBatch) write(ctx context.Context, st Store, p store.Presence) error {
	w := presenceWrite{p: p, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	lead := !b.writing
	b.writing = true
	b.mu.Unlock()
	if lead {
		b.drain(context.WithoutCancel(ctx), st)
	}
	return <-w.done
}

// drain writes the queue in batches until it is empty.
func (b *presenceBatch) drain(ctx context.Context, st Store) {
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxPresenceBatch)
		if n == 0 {
			b.writing = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()

		ps := make([]store.Presence, len(batch))
		for i, w := range batch {
			ps[i] = w.p
		}
		err := st.SetPresence(ctx, ps...)
		for _, w := range batch {
			w.done <- err
		}
	}
}
