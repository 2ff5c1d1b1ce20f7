package testutil

import (
	"testing"
	"time"
)

// pollInterval is how often Eventually retries fn.
const pollInterval = 5 * time.Millisecond

// Eventually calls fn until it returns nil and fails the test with fn's last
// error if that has not happened within timeout. Use it instead of
// time.Sleep to wait for something that happens in another goroutine.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
			return // reached only with a fake testing.TB
		}
		<-ticker.C
	}
}
