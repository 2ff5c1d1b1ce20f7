package uplink

import (
	"math/rand/v2"
	"sync"
	"time"
)

// backoff computes reconnect delays: exponential with full jitter, that is
// a uniformly random delay between 0 and a ceiling that starts at min and
// doubles per failed attempt up to max. Connections that drop soon after
// coming up (a broker that accepts and then kicks the client, a duplicate
// client id) count as failed attempts too, so they do not cause a tight
// reconnect loop. The very first connection attempt is immediate.
type backoff struct {
	min, max time.Duration
	// stable is how long a connection must last to reset the flap count.
	stable time.Duration
	// rnd returns a random number in [0, n); tests replace it.
	rnd func(n int64) int64
	now func() time.Time

	mu     sync.Mutex // guards the fields below
	everUp bool
	upAt   time.Time
	flaps  int
}

func newBackoff(minDelay, maxDelay time.Duration) *backoff {
	return &backoff{min: minDelay, max: maxDelay, stable: max(maxDelay, 10*time.Second), rnd: rand.Int64N, now: time.Now}
}

// delay is autopaho's ReconnectBackoff: the wait before attempt number
// attempt (0 for the first attempt after start or after a drop).
func (b *backoff) delay(attempt int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.everUp && attempt == 0 {
		return 0
	}
	ceiling := b.ceiling(b.flaps + attempt)
	return time.Duration(b.rnd(int64(ceiling) + 1))
}

func (b *backoff) ceiling(k int) time.Duration {
	c := b.min
	for range k {
		if c >= b.max/2 {
			return b.max
		}
		c *= 2
	}
	return min(c, b.max)
}

// up records that a connection came up.
func (b *backoff) up() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.everUp = true
	b.upAt = b.now()
}

// down records that the connection went down.
func (b *backoff) down() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.now().Sub(b.upAt) < b.stable {
		b.flaps++
	} else {
		b.flaps = 0
	}
}
