package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	outpostv1 "github.com/outpost-edge/outpost/gen/outpost/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func batch(seq uint64) *outpostv1.TelemetryBatch {
	return &outpostv1.TelemetryBatch{SeqFirst: seq, Points: []*outpostv1.Point{{Sensor: "s"}, {Sensor: "s"}}}
}

func next(t *testing.T, q *Memory) *outpostv1.TelemetryBatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return b
}

func TestMemoryFIFOAndRedelivery(t *testing.T) {
	ctx := context.Background()
	q := NewMemory(10)
	for i := range uint64(3) {
		_ = q.Put(ctx, batch(1+2*i))
	}
	b := next(t, q)
	if b.GetSeqFirst() != 1 {
		t.Fatalf("Next = %d, want 1", b.GetSeqFirst())
	}
	// Not done yet (say the publish failed): the same batch comes again.
	if again := next(t, q); again != b {
		t.Fatalf("Next before Done = %d, want the same batch", again.GetSeqFirst())
	}
	if err := q.Done(b); err != nil {
		t.Fatal(err)
	}
	if err := q.Done(b); !errors.Is(err, ErrNotHead) {
		t.Fatalf("second Done = %v, want ErrNotHead", err)
	}
	for _, want := range []uint64{3, 5} {
		b := next(t, q)
		if b.GetSeqFirst() != want {
			t.Fatalf("Next = %d, want %d", b.GetSeqFirst(), want)
		}
		_ = q.Done(b)
	}
	if st := q.Stats(); st.Len != 0 || st.Dropped != 0 {
		t.Fatalf("stats = %+v, want empty", st)
	}
}

func TestMemoryDropsOldestWaitingWhenFull(t *testing.T) {
	ctx := context.Background()
	q := NewMemory(2)
	_ = q.Put(ctx, batch(1))
	inFlight := next(t, q) // batch 1 is being published: it must survive
	for _, s := range []uint64{3, 5, 7, 9} {
		_ = q.Put(ctx, batch(s))
	}
	st := q.Stats()
	if st.Dropped != 2 || st.DroppedPoints != 4 || st.Len != 3 {
		t.Fatalf("stats = %+v, want 2 dropped batches (4 points) and 3 held", st)
	}
	if err := q.Done(inFlight); err != nil {
		t.Fatalf("Done(in flight) = %v", err)
	}
	for _, want := range []uint64{7, 9} {
		b := next(t, q)
		if b.GetSeqFirst() != want {
			t.Fatalf("Next = %d, want %d (3 and 5 were the oldest waiting)", b.GetSeqFirst(), want)
		}
		_ = q.Done(b)
	}
}

func TestMemoryNextWaits(t *testing.T) {
	q := NewMemory(1)
	got := make(chan *outpostv1.TelemetryBatch)
	go func() {
		b, _ := q.Next(context.Background())
		got <- b
	}()
	_ = q.Put(context.Background(), batch(42))
	select {
	case b := <-got:
		if b.GetSeqFirst() != 42 {
			t.Fatalf("Next = %d", b.GetSeqFirst())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake up on Put")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q2 := NewMemory(1)
	if _, err := q2.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a cancelled context = %v", err)
	}
}
