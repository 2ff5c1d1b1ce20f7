package device

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/store"
)

// slowPresenceStore is a Store whose SetPresence takes a while, as a disk
// write does, and records each call's batch.
type slowPresenceStore struct {
	Store
	mu      sync.Mutex
	batches [][]store.Presence
	err     error
}

func (s *slowPresenceStore) SetPresence(_ context.Context, ps ...store.Presence) error {
	time.Sleep(5 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, ps)
	return s.err
}

// TestPresenceGroupCommit checks that concurrent presence changes are
// written together, each exactly once, and that each caller returns only
// after its own change was written.
func TestPresenceGroupCommit(t *testing.T) {
	st := &slowPresenceStore{}
	var b presenceBatch
	const callers = 200
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			id := fmt.Sprintf("dev-%03d", i)
			if err := b.write(t.Context(), st, store.Presence{DeviceID: id, Online: true}); err != nil {
				t.Errorf("write %s: %v", id, err)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			for _, batch := range st.batches {
				for _, p := range batch {
					if p.DeviceID == id {
						return
					}
				}
			}
			t.Errorf("write %s returned before its change was written", id)
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, batch := range st.batches {
		if len(batch) > maxPresenceBatch {
			t.Errorf("a batch of %d changes, more than %d", len(batch), maxPresenceBatch)
		}
		for _, p := range batch {
			seen[p.DeviceID]++
		}
	}
	if len(seen) != callers {
		t.Errorf("%d devices written, want %d", len(seen), callers)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s written %d times", id, n)
		}
	}
	// 200 callers against a 5 ms write: one by one would be 200 writes.
	if len(st.batches) >= callers/2 {
		t.Errorf("%d store writes for %d concurrent changes: not batched", len(st.batches), callers)
	}
}

func TestPresenceGroupCommitOrderAndErrors(t *testing.T) {
	st := &slowPresenceStore{err: errors.New("disk full")}
	var b presenceBatch
	// Sequential changes of one device are written in call order.
	for i, online := range []bool{true, false, true} {
		err := b.write(t.Context(), st, store.Presence{DeviceID: "pump-7", Online: online, At: t0.Add(time.Duration(i) * time.Second)})
		if err == nil || err.Error() != "disk full" {
			t.Fatalf("write: %v, want the store's error", err)
		}
	}
	var got []bool
	for _, batch := range st.batches {
		for _, p := range batch {
			got = append(got, p.Online)
		}
	}
	if fmt.Sprint(got) != "[true false true]" {
		t.Errorf("written in order %v, want [true false true]", got)
	}
}
