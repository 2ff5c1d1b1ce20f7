package uplink

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	now := time.Unix(1764086400, 0)
	b := newBackoff(100*time.Millisecond, 1*time.Second)
	b.now = func() time.Time { return now }
	b.rnd = func(n int64) int64 { return n - 1 } // always the ceiling

	if d := b.delay(0); d != 0 {
		t.Fatalf("first attempt waits %s, want 0", d)
	}
	for attempt, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond, 4: time.Second, 30: time.Second} {
		if d := b.delay(attempt); d != want {
			t.Errorf("delay(%d) = %s, want %s", attempt, d, want)
		}
	}

	// After a connection that lasted, reconnecting starts over at min.
	b.up()
	now = now.Add(time.Hour)
	b.down()
	if d := b.delay(0); d != 100*time.Millisecond {
		t.Errorf("delay(0) after a stable connection = %s, want 100ms", d)
	}
	// Connections that drop at once count as failures.
	for range 3 {
		b.up()
		b.down()
	}
	if d := b.delay(0); d != 800*time.Millisecond {
		t.Errorf("delay(0) after 3 flaps = %s, want 800ms", d)
	}

	// Full jitter: any value from 0 up to the ceiling.
	b.rnd = func(n int64) int64 { return 0 }
	if d := b.delay(5); d != 0 {
		t.Errorf("delay with jitter 0 = %s, want 0", d)
	}
	real := newBackoff(time.Millisecond, 10*time.Millisecond)
	real.up()
	for range 1000 {
		if d := real.delay(3); d < 0 || d > 8*time.Millisecond {
			t.Fatalf("delay(3) = %s, want within [0, 8ms]", d)
		}
	}
}
